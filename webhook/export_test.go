package webhook

import "time"

// Backoff exposes d.backoff to the tests.
func Backoff(d *Dispatcher, attempt int) time.Duration { return d.backoff(attempt) }
