package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in YAML as a Go duration string
// ("250ms", "10s", "30m"). A bare integer is read as seconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements the goccy/go-yaml interface unmarshaler.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var raw any
	if err := unmarshal(&raw); err != nil {
		return err
	}
	v, err := parseDuration(raw)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in its human form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func parseDuration(raw any) (time.Duration, error) {
	switch v := raw.(type) {
	case nil:
		return 0, nil
	case uint64:
		return time.Duration(v) * time.Second, nil
	case int64:
		return time.Duration(v) * time.Second, nil
	case int:
		return time.Duration(v) * time.Second, nil
	case string:
		s := strings.TrimSpace(v)
		if s == "" || s == "0" {
			return 0, nil
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q (want e.g. 250ms, 10s, 5m)", v)
		}
		if dur < 0 {
			return 0, fmt.Errorf("invalid duration %q: negative", v)
		}
		return dur, nil
	default:
		return 0, fmt.Errorf("invalid duration %v (want e.g. 250ms, 10s, 5m)", raw)
	}
}

// Size is a byte count written in YAML as an integer or with a unit:
// B, KB/MB/GB (powers of 1000), KiB/MiB/GiB (powers of 1024); K, M, G are read
// as KiB, MiB, GiB.
type Size int64

// N returns the size as an int, the type most buffer APIs take.
func (s Size) N() int { return int(s) }

func (s Size) String() string {
	switch {
	case s != 0 && s%(1<<30) == 0:
		return strconv.FormatInt(int64(s)>>30, 10) + "GiB"
	case s != 0 && s%(1<<20) == 0:
		return strconv.FormatInt(int64(s)>>20, 10) + "MiB"
	case s != 0 && s%(1<<10) == 0:
		return strconv.FormatInt(int64(s)>>10, 10) + "KiB"
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// UnmarshalYAML implements the goccy/go-yaml interface unmarshaler.
func (s *Size) UnmarshalYAML(unmarshal func(any) error) error {
	var raw any
	if err := unmarshal(&raw); err != nil {
		return err
	}
	v, err := parseSize(raw)
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// MarshalYAML writes the size back in its human form.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first so "KiB" is not read as "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
	{"b", 1},
}

func parseSize(raw any) (int64, error) {
	switch v := raw.(type) {
	case nil:
		return 0, nil
	case uint64:
		return int64(v), nil
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("invalid size %d: negative", v)
		}
		return v, nil
	case int:
		if v < 0 {
			return 0, fmt.Errorf("invalid size %d: negative", v)
		}
		return int64(v), nil
	case string:
		return ParseSize(v)
	default:
		return 0, fmt.Errorf("invalid size %v (want e.g. 512, 16KiB, 8MiB)", raw)
	}
}

// ParseSize reads a human byte size such as "16KiB" or "8MiB".
func ParseSize(text string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(text))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			s = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			mult = u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 512, 16KiB, 8MiB)", text)
	}
	total := n * float64(mult)
	if total > 1<<62 {
		return 0, fmt.Errorf("invalid size %q: too large", text)
	}
	return int64(total), nil
}
