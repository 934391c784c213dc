package events

// MaxPayloadDepth is how deeply an event payload may nest objects and
// arrays, the payload object itself being level 1. Deeper payloads are
// refused when published.
const MaxPayloadDepth = 64

// nestedDeeper reports whether the JSON text raw nests objects and arrays
// more than max levels deep. It reads raw once, byte by byte, skipping
// strings, and stops at the first level too deep: its work does not grow
// with the nesting. raw must be valid JSON.
func nestedDeeper(raw []byte, max int) bool {
	depth := 0
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped character, which may be a quote
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > max {
				return true
			}
		case '}', ']':
			depth--
		}
	}
	return false
}
