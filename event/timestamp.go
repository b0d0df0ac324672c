package event

import "time"

// parseTimestamp returns what time.Parse(time.RFC3339Nano, s) returns. The
// form Encode writes — UTC with a "Z" and at most nine fraction digits — is
// parsed here, several times faster; anything else goes to time.Parse
// (the fuzz test compares them).
func parseTimestamp(s string) (time.Time, error) {
	if t, ok := parseUTCTimestamp(s); ok {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// parseUTCTimestamp parses YYYY-MM-DDTHH:MM:SS[.fraction]Z with a valid
// date and time of day; ok is false for anything else.
func parseUTCTimestamp(s string) (t time.Time, ok bool) {
	if len(s) < len("2006-01-02T15:04:05Z") || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
		s[13] != ':' || s[16] != ':' || s[len(s)-1] != 'Z' {
		return t, false
	}
	var v [6]int // year, month, day, hour, minute, second
	for i, at := range [6]int{0, 5, 8, 11, 14, 17} {
		n := 2
		if i == 0 {
			n = 4
		}
		for _, c := range []byte(s[at : at+n]) {
			if c < '0' || c > '9' {
				return t, false
			}
			v[i] = v[i]*10 + int(c-'0')
		}
	}
	year, month, day := v[0], v[1], v[2]
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || v[3] > 23 || v[4] > 59 || v[5] > 59 {
		return t, false
	}
	nsec := 0
	switch frac := s[19 : len(s)-1]; {
	case frac == "":
	case len(frac) >= 2 && len(frac) <= 10 && frac[0] == '.':
		for _, c := range []byte(frac[1:]) {
			if c < '0' || c > '9' {
				return t, false
			}
			nsec = nsec*10 + int(c-'0')
		}
		for range 10 - len(frac) {
			nsec *= 10
		}
	default:
		return t, false
	}
	return time.Date(year, time.Month(month), day, v[3], v[4], v[5], nsec, time.UTC), true
}

// daysIn returns the number of days of a month (1 to 12) in the proleptic
// Gregorian calendar.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
