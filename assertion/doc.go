// Package assertion signs identity assertions: short-lived JWTs (RFC 7519)
// that tell an app behind sessiond who a request comes from, in a form the
// app can verify against sessiond's published keys instead of trusting a
// header because nothing else can reach it.
//
// An Issuer signs with ES256 (ECDSA P-256 and SHA-256, RFC 7518 §3.4),
// which every JOSE library and JWT-checking gateway verifies. The
// claims are iss (Config.Issuer), aud, sub (the user ID), sid (the public
// session ID), preferred_username, groups (the roles), auth_time, amr
// (RFC 8176), acr ("aal1" or "aal2": the NIST SP 800-63B assurance level
// of the session, as X-Session-AAL says it), iat and exp, with the key ID
// in the kid header and typ "JWT".
//
// Keys live in the database that keeps the users (KeyStore: a SQLite file,
// OpenSQLite, or PostgreSQL, OpenPostgres), in a table of this package's
// own, so every instance signs with keys every instance publishes. The
// guarantees:
//   - A key is published (JWKS) for Config.PublishLead before it signs,
//     so that verifiers caching the key set see it first; an Issuer
//     refreshes its keys every Config.RefreshInterval, and stops signing
//     (ErrNoKey) once its copy is too old to be sure which key signs.
//   - A key that stops signing stays published until every assertion it
//     signed has expired (the assertion lifetime plus a minute of clock
//     skew), then is deleted.
//   - Rotations are serialised by the database (a write transaction in
//     SQLite, an advisory lock in PostgreSQL): of several instances
//     rotating at once, one adds the key and the others find it.
//   - An assertion lives at most Config.Lifetime (at most 5 minutes) and
//     never past the session's own expiry. It is reused for the same
//     session, token, identity and audience until half its life is gone,
//     from a bounded cache, so most requests cost no signature.
//
// Private keys are stored as PKCS#8. With Config.KeySecrets, key-encryption
// keys kept outside the database, each is sealed (AES-256-GCM, bound to its
// key ID), so that a copy of the database (a backup, a read-only breach)
// signs nothing. Without them, a private key has the protection of the
// password hashes beside it (a file of mode 0600; the database role's
// privileges): whoever can read the table can sign assertions. They are
// never logged and never served; the JWKS holds public keys only.
package assertion
