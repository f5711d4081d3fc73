// sessiond's passkey ceremonies: the one script of its pages, loaded only
// by the pages that offer a passkey. Each element marked data-passkey
// ("create" to register one, "get" to sign in or check one) stays hidden
// unless this browser can use passkeys; its button marked
// data-passkey-start starts the ceremony, with the fields "name", "rd"
// and "remember" of the element's form (or of the element), or data-rd.
// The ceremony posts to data-begin,
// asks the browser for the passkey, posts the answer to data-finish, and
// goes where the server's answer says ("redirect").
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function fromB64(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) {
      s += "=";
    }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out.buffer;
  }

  function toB64(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) {
      bin += String.fromCharCode(bytes[i]);
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIDs(list) {
    return (list || []).map(function (c) {
      return Object.assign({}, c, { id: fromB64(c.id) });
    });
  }

  // The server's options, as JSON, with their binary fields as buffers.
  function creationOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = fromB64(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: fromB64(pk.user.id) });
    pk.excludeCredentials = withIDs(pk.excludeCredentials);
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = fromB64(pk.challenge);
    pk.allowCredentials = withIDs(pk.allowCredentials);
    return { publicKey: pk };
  }

  // The browser's credential as JSON (PublicKeyCredential.toJSON()).
  function credentialJSON(c) {
    var r = c.response;
    var out = {
      id: c.id,
      rawId: toB64(c.rawId),
      type: c.type,
      clientExtensionResults: {},
      response: { clientDataJSON: toB64(r.clientDataJSON) }
    };
    if (c.authenticatorAttachment) {
      out.authenticatorAttachment = c.authenticatorAttachment;
    }
    if (r.attestationObject) {
      out.response.attestationObject = toB64(r.attestationObject);
      if (r.getTransports) {
        out.response.transports = r.getTransports();
      }
    } else {
      out.response.authenticatorData = toB64(r.authenticatorData);
      out.response.signature = toB64(r.signature);
      if (r.userHandle) {
        out.response.userHandle = toB64(r.userHandle);
      }
    }
    return out;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        if (!res.ok) {
          throw new Error((data.error && data.error.message) || "The server refused the request (" + res.status + ").");
        }
        return data;
      });
    });
  }

  function run(el) {
    var create = el.getAttribute("data-passkey") === "create";
    var scope = el.closest("form") || el;
    var field = function (name) { return scope.querySelector("[name=" + name + "]"); };
    var errorBox = el.querySelector("[data-passkey-error]");
    var buttons = el.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    if (errorBox) {
      errorBox.hidden = true;
    }
    post(el.getAttribute("data-begin"), {}).then(function (options) {
      return create ? navigator.credentials.create(creationOptions(options)) : navigator.credentials.get(requestOptions(options));
    }).then(function (cred) {
      var body = { credential: credentialJSON(cred) };
      if (create) {
        body.name = field("name") ? field("name").value : "";
      } else {
        var rd = field("rd") ? field("rd").value : el.getAttribute("data-rd");
        if (rd) {
          body.rd = rd;
        }
        if (field("remember")) {
          body.remember = field("remember").checked;
        }
      }
      return post(el.getAttribute("data-finish"), body);
    }).then(function (done) {
      window.location.assign(done.redirect || window.location.href);
    }).catch(function (e) {
      buttons.forEach(function (b) { b.disabled = false; });
      if (errorBox) {
        errorBox.textContent = e && e.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : (e && e.message) || "The passkey did not work.";
        errorBox.hidden = false;
      }
    });
  }

  document.querySelectorAll("[data-passkey]").forEach(function (el) {
    el.hidden = false;
    var start = el.querySelector("[data-passkey-start]") || el;
    start.addEventListener("click", function (e) {
      e.preventDefault();
      run(el);
    });
  });
})();
