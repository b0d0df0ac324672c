package event

import "unicode/utf8"

// validJSON reports whether b is one JSON value in UTF-8 (RFC 8259 §8.1;
// json.Valid alone lets invalid UTF-8 inside strings through), with
// optional white space around it. It reports exactly what
// utf8.Valid(b) && json.Valid(b) report, nesting limit included, in one
// pass over b and several times faster (the fuzz test compares them).
func validJSON(b []byte) bool {
	var stackBuf [32]bool // open containers: true for an object, false for an array
	stack := stackBuf[:0]
	i := skipJSONSpace(b, 0)
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) == maxJSONDepth {
				return false
			}
			stack = append(stack, c == '{')
			i = skipJSONSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' or ']'
				i++
				stack = stack[:len(stack)-1]
				break
			}
			if c == '{' {
				if i = skipJSONKey(b, i); i < 0 {
					return false
				}
			}
			continue
		case c == '"':
			if i = skipJSONString(b, i); i < 0 {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if i = skipJSONNumber(b, i); i < 0 {
				return false
			}
		case c == 't' && hasPrefix(b[i:], "true"), c == 'n' && hasPrefix(b[i:], "null"):
			i += 4
		case c == 'f' && hasPrefix(b[i:], "false"):
			i += 5
		default:
			return false
		}
		// After a value: close containers until a comma or the end.
		for {
			i = skipJSONSpace(b, i)
			if len(stack) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			object := stack[len(stack)-1]
			if b[i] == ',' {
				i = skipJSONSpace(b, i+1)
				if object {
					if i = skipJSONKey(b, i); i < 0 {
						return false
					}
				}
				break
			}
			if (object && b[i] != '}') || (!object && b[i] != ']') {
				return false
			}
			i++
			stack = stack[:len(stack)-1]
		}
	}
}

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipJSONKey skips an object member's name and colon from b[i] and the
// white space after them; -1 when they are not there.
func skipJSONKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = skipJSONString(b, i); i < 0 {
		return -1
	}
	if i = skipJSONSpace(b, i); i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipJSONSpace(b, i+1)
}

// skipJSONString returns the index after the string that starts at b[i]
// (a quote), or -1 when it is not a valid string of valid UTF-8.
func skipJSONString(b []byte, i int) int {
	for i++; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		case c < ' ':
			return -1
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return -1
			}
			i += size
		}
	}
	return -1
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipJSONNumber returns the index after the number that starts at b[i],
// or -1 when it is not a valid number.
func skipJSONNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
