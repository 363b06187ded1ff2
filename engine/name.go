package engine

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Limits of a DNS name (RFC 1035 2.3.4): 253 characters written out, 63 a label.
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// nameProfile maps a name the way a resolver library would before it asks
// (UTS #46 lookup: case folded, Unicode to punycode), and holds labels to
// letters, digits and hyphens. Underscores are let through afterwards by
// checkLabel (service names such as _dmarc occur in real answers); idna's
// STD3 rules would refuse them.
var nameProfile = idna.New(idna.MapForLookup(), idna.StrictDomainName(false), idna.Transitional(false))

// ParseName validates a destination name and returns its canonical form:
// lower case ASCII (punycode for international names), no trailing dot. A
// leading "*." makes it a wildcard for every name below it (not the name
// itself); a "*" anywhere else is refused.
func ParseName(s string) (string, error) {
	name, wild := strings.CutPrefix(s, "*.")
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("%q: a wildcard may only be the whole first label (*.example.com)", s)
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return "", fmt.Errorf("%q is not a DNS name", s)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%q is not a valid DNS name: not UTF-8", s)
	}
	ascii, err := nameProfile.ToASCII(name)
	if err == nil {
		// What a resolver is asked must map to itself again (a punycode
		// label that decodes to something invalid does not).
		var again string
		if again, err = nameProfile.ToASCII(ascii); err == nil && again != ascii {
			err = fmt.Errorf("%q does not map to itself", ascii)
		}
	}
	if err != nil {
		return "", fmt.Errorf("%q is not a valid DNS name: %v", s, idnaReason(err))
	}
	if len(ascii) > maxNameLen-len("*.")*boolInt(wild) {
		return "", fmt.Errorf("%q is longer than a DNS name may be (%d characters)", s, maxNameLen)
	}
	labels := strings.Split(ascii, ".")
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return "", fmt.Errorf("%q is not a valid DNS name: %v", s, err)
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "", fmt.Errorf("%q is not a valid DNS name: the last label is all digits", s)
	}
	if wild {
		return "*." + ascii, nil
	}
	return ascii, nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("an empty label (two dots in a row)")
	case len(l) > maxLabelLen:
		return fmt.Errorf("label %q is longer than %d characters", l, maxLabelLen)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("label %q holds %q (want letters, digits, hyphens)", l, c)
		}
	}
	return nil
}

// idnaReason drops the idna package's echo of its input.
func idnaReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// NameMatches reports whether a name entry (canonical, as ParseName gives it)
// covers the DNS name asked: the name itself, or for "*.X" any name below X
// (not X itself). asked may be in any case and may end in a dot.
func NameMatches(entry, asked string) bool {
	asked = strings.ToLower(strings.TrimSuffix(asked, "."))
	if suffix, wild := strings.CutPrefix(entry, "*"); wild {
		return len(asked) > len(suffix) && strings.HasSuffix(asked, suffix)
	}
	return asked == entry
}
