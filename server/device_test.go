package server

import (
	"strings"
	"testing"
)

// userAgents are real User-Agent headers and what the pages show for them.
var userAgents = []struct{ ua, want string }{
	{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128 on Linux"},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome 126 on Windows"},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87", "Edge 126 on Windows"},
	{"Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36 OPR/95.0.0.0", "Opera 95 on Windows 7"},
	{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari 17 on macOS"},
	{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:127.0) Gecko/20100101 Firefox/127.0", "Firefox 127 on macOS"},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1", "Safari 17 on iOS 17.4"},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1", "Chrome 126 on iOS 17.5"},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/127.0 Mobile/15E148 Safari/605.1.15", "Firefox 127 on iOS 17.5"},
	{"Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", "Safari 16 on iPadOS 16.6"},
	{"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36", "Chrome 126 on Android 10"},
	{"Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36", "Samsung Internet 25 on Android 14"},
	{"Mozilla/5.0 (Android 14; Mobile; rv:127.0) Gecko/127.0 Firefox/127.0", "Firefox 127 on Android 14"},
	{"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome 126 on ChromeOS"},
	{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36", "Headless Chrome 156 on Linux"},
	{"Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0)", "Internet Explorer 10 on Windows 8"},
	{"Mozilla/5.0 (Windows NT 6.3; Trident/7.0; rv:11.0) like Gecko", "Internet Explorer on Windows 8.1"},
	{"Mozilla/5.0 (X11; FreeBSD amd64; rv:126.0) Gecko/20100101 Firefox/126.0", "Firefox 126 on FreeBSD"},
	{"curl/8.5.0", "curl 8"},
	{"Wget/1.21.3", "Wget 1"},
	{"Go-http-client/1.1", "Go HTTP client"},
	{"python-requests/2.32.3", "Python requests 2"},
	{"okhttp/4.12.0", "OkHttp 4"},
	{"Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240605.024)", "Android app on Android 14"},
	{"Mozilla/5.0 (X11; Linux x86_64)", "Unknown browser on Linux"},
	{"", "Unknown device"},
	{"something/1.0", "Unknown device"},
	// Client-chosen text around the markers never reaches the page.
	{"Firefox/<script>alert(1)</script>", "Firefox"},
	{"Chrome/99999999999999999999 (Windows NT 10.0)", "Chrome 99999999 on Windows"},
	{"Chrome/1..2 Android 3.", "Chrome 1 on Android 3"},
}

func TestParseDevice(t *testing.T) {
	for _, tt := range userAgents {
		if got := parseDevice(tt.ua).String(); got != tt.want {
			t.Errorf("parseDevice(%q) = %q, want %q", tt.ua, got, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, tt := range []struct {
		v     string
		parts int
		want  string
	}{
		{"126.0.6478.55", 1, "126"},
		{"126.0.6478.55", 2, "126.0"},
		{"17.4", 3, "17.4"},
		{"17.", 2, "17"},
		{".5", 1, ""},
		{"1..2", 2, "1"},
		{"123456789", 1, "12345678"},
		{"1.2.3.4.5.6", 9, "1.2.3.4"},
		{"12", 0, ""},
		{"x1", 1, ""},
	} {
		if got := version(tt.v, tt.parts); got != tt.want {
			t.Errorf("version(%q, %d) = %q, want %q", tt.v, tt.parts, got, tt.want)
		}
	}
}

// FuzzParseDevice checks that any header yields a short, plain label made
// of the parser's own words and digits: nothing a client writes in its
// User-Agent can become text on the page.
func FuzzParseDevice(f *testing.F) {
	for _, tt := range userAgents {
		f.Add(tt.ua)
	}
	words := map[string]bool{"on": true, "Unknown": true, "device": true, "browser": true}
	for _, b := range browsers {
		for _, w := range strings.Fields(b.name) {
			words[w] = true
		}
	}
	for _, w := range strings.Fields("Safari iOS iPadOS Android ChromeOS Windows Phone macOS FreeBSD OpenBSD Linux") {
		words[w] = true
	}
	f.Fuzz(func(t *testing.T, ua string) {
		d := parseDevice(ua)
		got := d.String()
		if got == "" || len(got) > 80 {
			t.Fatalf("parseDevice(%q) = %q: empty or too long", ua, got)
		}
		for _, w := range strings.Fields(got) {
			if !words[w] && strings.Trim(w, "0123456789.") != "" {
				t.Fatalf("parseDevice(%q) = %q: %q is neither a known name nor a version", ua, got, w)
			}
			if strings.HasPrefix(w, ".") || strings.HasSuffix(w, ".") || strings.Contains(w, "..") {
				t.Fatalf("parseDevice(%q) = %q: malformed version %q", ua, got, w)
			}
		}
		if again := parseDevice(ua); again != d {
			t.Fatalf("parseDevice(%q) is not deterministic: %v then %v", ua, d, again)
		}
	})
}
