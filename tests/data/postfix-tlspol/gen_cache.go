// Writes cache.db in the cache file format of postfix-tlspol 1.10 to 1.13: a
// gzip-compressed (BestSpeed) encoding/gob stream of one map[string]*CacheStruct,
// with the field names and types of that release's structs.  Run with
// `go run gen_cache.go` in this directory; the output is committed, so the tests
// need no Go toolchain.  Times are fixed: the tests import as of 2026-01-01.
package main

import (
	"compress/gzip"
	"encoding/gob"
	"os"
	"time"
)

type Expirable struct {
	ExpiresAt time.Time
}

type PolicyBranch struct {
	ExpiresAt time.Time
	Policy    string
	Report    string
	TTL       uint32
}

type CacheStruct struct {
	DaneLastAttempt   time.Time
	MtaStsLastAttempt time.Time
	*Expirable
	Policy  string
	Report  string
	Dane    PolicyBranch
	MtaSts  PolicyBranch
	TTL     uint32
	Counter uint32
}

func report(domain string, patterns []string, maxAge string) string {
	r := "policy_type=sts policy_domain=" + domain
	for _, p := range patterns {
		r += " mx_host_pattern=" + p
	}
	r += " { policy_string = version: STSv1 } { policy_string = mode: enforce }"
	for _, p := range patterns {
		r += " { policy_string = mx: " + p + " }"
	}
	return r + " { policy_string = max_age: " + maxAge + " }"
}

func main() {
	// The import runs "now" = 2026-01-01T00:00:00Z.
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fetched := now.Add(-2 * time.Hour)
	enforce := PolicyBranch{
		ExpiresAt: fetched.Add(604800 * time.Second),
		Policy:    "secure match=mx1.enforce.example:.enforce.example servername=hostname",
		Report:    report("enforce.example", []string{"mx1.enforce.example", "*.enforce.example"}, "604800"),
		TTL:       604800,
	}
	// max_age above CACHE_MAX_TTL (30 days): the branch lives 30 days, the policy a year.
	long := PolicyBranch{
		ExpiresAt: fetched.Add(2592000 * time.Second),
		Policy:    "secure match=mx.long.example servername=hostname",
		Report:    report("long.example", []string{"mx.long.example"}, "31557600"),
		TTL:       2592000,
	}
	expired := PolicyBranch{
		ExpiresAt: now.Add(-time.Hour),
		Policy:    "secure match=mx.expired.example servername=hostname",
		Report:    report("expired.example", []string{"mx.expired.example"}, "86400"),
		TTL:       86400,
	}
	data := map[string]*CacheStruct{
		"enforce.example": {
			MtaStsLastAttempt: fetched, DaneLastAttempt: fetched,
			Expirable: &Expirable{ExpiresAt: enforce.ExpiresAt},
			Policy:    enforce.Policy, Report: enforce.Report, TTL: enforce.TTL,
			Dane:   PolicyBranch{ExpiresAt: now.Add(22 * time.Hour), TTL: 86400},
			MtaSts: enforce, Counter: 7,
		},
		"long.example": {
			MtaStsLastAttempt: fetched, Expirable: &Expirable{ExpiresAt: long.ExpiresAt},
			Policy: long.Policy, Report: long.Report, TTL: long.TTL, MtaSts: long, Counter: 1,
		},
		"expired.example": {
			MtaStsLastAttempt: now.Add(-25 * time.Hour),
			Expirable:         &Expirable{ExpiresAt: expired.ExpiresAt},
			Policy:            expired.Policy, Report: expired.Report, TTL: expired.TTL,
			MtaSts: expired, Counter: 3,
		},
		// DANE only: nothing for MTA-STS to carry over.
		"dane.example": {
			DaneLastAttempt: fetched, Expirable: &Expirable{ExpiresAt: now.Add(time.Hour)},
			Policy: "dane-only", TTL: 3600,
			Dane:   PolicyBranch{ExpiresAt: now.Add(time.Hour), Policy: "dane-only", TTL: 3600},
			Counter: 12,
		},
		// A testing policy (postfix-tlspol keeps no policy text for it) and a domain
		// without MTA-STS: "no policy" entries.
		"testing.example": {
			MtaStsLastAttempt: fetched, Expirable: &Expirable{ExpiresAt: now.Add(22 * time.Hour)},
			TTL: 86400, MtaSts: PolicyBranch{ExpiresAt: now.Add(22 * time.Hour), TTL: 86400},
		},
		"plain.example": {
			MtaStsLastAttempt: fetched, Expirable: &Expirable{ExpiresAt: now.Add(time.Hour)},
			TTL: 1800, MtaSts: PolicyBranch{ExpiresAt: now.Add(time.Hour), TTL: 1800},
		},
		// Only counted lookups so far (postfix-tlspol's statistics entries).
		"counted.example": {Expirable: &Expirable{}, Counter: 2},
	}
	f, err := os.Create("cache.db")
	if err != nil {
		panic(err)
	}
	g, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		panic(err)
	}
	if err := gob.NewEncoder(g).Encode(data); err != nil {
		panic(err)
	}
	if err := g.Close(); err != nil {
		panic(err)
	}
	if err := f.Close(); err != nil {
		panic(err)
	}
}
