package server

import "strings"

// device is what the account and admin pages show of a User-Agent
// header: the browser (or HTTP client) and the operating system, each
// "" when not recognised. User agents are client-chosen text: the parser
// only looks for known markers, never echoes free text beyond a short
// version number, and so cannot be made to show a message of the
// client's choosing.
type device struct {
	Browser string // "Firefox 128", "Safari 17", "curl 8"; "" if unknown
	OS      string // "Linux", "macOS", "iOS 17.4", "Android 14"; "" if unknown
}

// String is "Browser on OS", or what is known of it, or "Unknown device".
func (d device) String() string {
	switch {
	case d.Browser != "" && d.OS != "":
		return d.Browser + " on " + d.OS
	case d.Browser != "":
		return d.Browser
	case d.OS != "":
		return "Unknown browser on " + d.OS
	}
	return "Unknown device"
}

// maxVersionLen bounds the version numbers parseDevice keeps.
const maxVersionLen = 8

// browsers are tried in order: many user agents name several engines
// ("... Chrome/126 Safari/537.36 Edg/126"), so the most specific marker
// comes first. version is how much of the version to keep (1 = major).
var browsers = []struct {
	marker, name string
	version      int
}{
	{"Edg/", "Edge", 1},
	{"EdgA/", "Edge", 1},
	{"EdgiOS/", "Edge", 1},
	{"Edge/", "Edge", 1},
	{"OPR/", "Opera", 1},
	{"OPiOS/", "Opera", 1},
	{"SamsungBrowser/", "Samsung Internet", 1},
	{"YaBrowser/", "Yandex Browser", 1},
	{"Vivaldi/", "Vivaldi", 1},
	{"Brave/", "Brave", 1},
	{"FxiOS/", "Firefox", 1},
	{"Firefox/", "Firefox", 1},
	{"CriOS/", "Chrome", 1},
	{"HeadlessChrome/", "Headless Chrome", 1},
	{"Chromium/", "Chromium", 1},
	{"Chrome/", "Chrome", 1},
	{"MSIE ", "Internet Explorer", 1},
	{"Trident/", "Internet Explorer", 0},
	{"curl/", "curl", 1},
	{"Wget/", "Wget", 1},
	{"Go-http-client/", "Go HTTP client", 0},
	{"python-requests/", "Python requests", 1},
	{"python-httpx/", "Python httpx", 1},
	{"okhttp/", "OkHttp", 1},
	{"PostmanRuntime/", "Postman", 1},
	{"Dalvik/", "Android app", 0},
}

// parseDevice reads the browser and operating system from a User-Agent
// header. It never fails: what it does not recognise it leaves "".
func parseDevice(ua string) device {
	if len(ua) > 512 { // session records keep at most this much anyway
		ua = ua[:512]
	}
	var d device
	for _, b := range browsers {
		if v, ok := after(ua, b.marker); ok {
			d.Browser = withVersion(b.name, v, b.version)
			break
		}
	}
	if d.Browser == "" && strings.Contains(ua, "Safari/") && strings.Contains(ua, "AppleWebKit/") {
		v, _ := after(ua, "Version/")
		d.Browser = withVersion("Safari", v, 1)
	}
	d.OS = parseOS(ua)
	return d
}

// parseOS reads the operating system from ua.
func parseOS(ua string) string {
	switch {
	case strings.Contains(ua, "iPhone") || strings.Contains(ua, "iPod"):
		return withVersion("iOS", appleVersion(ua), 2)
	case strings.Contains(ua, "iPad"):
		return withVersion("iPadOS", appleVersion(ua), 2)
	case strings.Contains(ua, "Android"):
		v, _ := after(ua, "Android ")
		return withVersion("Android", v, 1)
	case strings.Contains(ua, "CrOS "):
		return "ChromeOS"
	case strings.Contains(ua, "Windows Phone"):
		return "Windows Phone"
	case strings.Contains(ua, "Windows"):
		v, _ := after(ua, "Windows NT ")
		switch version(v, 2) {
		case "6.1":
			return "Windows 7"
		case "6.2":
			return "Windows 8"
		case "6.3":
			return "Windows 8.1"
		}
		return "Windows" // 10 and 11 both say "Windows NT 10.0"
	case strings.Contains(ua, "Macintosh") || strings.Contains(ua, "Mac OS X"):
		return "macOS" // browsers freeze the version at 10_15_7
	case strings.Contains(ua, "FreeBSD"):
		return "FreeBSD"
	case strings.Contains(ua, "OpenBSD"):
		return "OpenBSD"
	case strings.Contains(ua, "Linux") || strings.Contains(ua, "X11"):
		return "Linux"
	}
	return ""
}

// appleVersion returns the version in "CPU iPhone OS 17_4 like Mac OS X"
// as "17.4".
func appleVersion(ua string) string {
	v, ok := after(ua, " OS ")
	if !ok {
		return ""
	}
	return version(strings.ReplaceAll(v, "_", "."), 2)
}

// after returns what follows the first marker in s.
func after(s, marker string) (string, bool) {
	i := strings.Index(s, marker)
	if i < 0 {
		return "", false
	}
	return s[i+len(marker):], true
}

// withVersion is name followed by the first parts of the version at the
// start of v, if there is one and parts > 0.
func withVersion(name, v string, parts int) string {
	if v := version(v, parts); v != "" {
		return name + " " + v
	}
	return name
}

// version returns up to parts dot-separated groups of ASCII digits from
// the start of v ("126.0.6478.55" with 1 → "126"), at most maxVersionLen
// bytes: nothing but digits and dots, whatever v holds.
func version(v string, parts int) string {
	if parts <= 0 {
		return ""
	}
	n, groups := 0, 1
	for n < len(v) && n < maxVersionLen {
		switch c := v[n]; {
		case isDigit(c):
		case c == '.' && n > 0 && groups < parts && n+1 < len(v) && isDigit(v[n+1]):
			groups++
		default:
			return v[:n]
		}
		n++
	}
	return strings.TrimRight(v[:n], ".")
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
