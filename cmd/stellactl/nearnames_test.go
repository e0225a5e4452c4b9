package main

import (
	"slices"
	"testing"
)

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"prod", "prod", 0},
		{"", "prod", 4},
		{"prod", "", 4},
		{"prdo", "prod", 1},   // adjacent swap
		{"prd", "prod", 1},    // deletion
		{"prood", "prod", 1},  // insertion
		{"prad", "prod", 1},   // substitution
		{"stgae", "stage", 1}, // swap in the middle
		{"dev", "prod", 4},
		{"ca", "abc", 3}, // optimal string alignment: no edit of a swapped pair
		{"production", "produciton", 1},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d (not symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestNearNames(t *testing.T) {
	envs := []string{"dev", "stage", "prod", "prod-eu", "production"}
	for _, tc := range []struct {
		name       string
		typed      string
		candidates []string
		want       []string
	}{
		{"a swapped pair", "prdo", envs, []string{"prod"}},
		{"a missing letter", "stge", envs, []string{"stage"}},
		{"a prefix typed without its suffix", "stag", []string{"staging-eu", "dev"}, []string{"staging-eu"}},
		{"a two-letter prefix is too short to say", "st", []string{"staging-eu", "dev"}, nil},
		{"a prefix also close by distance comes first", "pro", envs, []string{"prod", "prod-eu", "production"}},
		{"upper case typed", "PROD", envs, []string{"prod"}},
		{"nothing close", "qa", envs, nil},
		{"a short name with two typos is another name", "dve", []string{"dev", "qa"}, []string{"dev"}},
		{"three typos in a long name are too many", "prxdxctixn", envs, nil},
		{"two typos in a long name are close", "prxduction", envs, []string{"production"}},
		{"the name itself is not a suggestion", "prod", []string{"prod"}, nil},
		{"no candidates", "prod", nil, nil},
		{"closest first, then by name, at most three", "shop-1", []string{"shop-9", "shop-2", "shop-10", "shop-11", "shop-3"},
			[]string{"shop-10", "shop-11", "shop-2"}},
		{"a release version one off", "shop-2.3.1", []string{"shop-2.3.0", "shop-1.0.0"}, []string{"shop-2.3.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nearNames(tc.typed, tc.candidates); !slices.Equal(got, tc.want) {
				t.Errorf("nearNames(%q) = %q, want %q", tc.typed, got, tc.want)
			}
		})
	}
}

func TestSomeNames(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"prod"}, `"prod"`},
		{[]string{"prod", "dev"}, `"dev" and "prod"`},
		{[]string{"stage", "prod", "dev"}, `"dev", "prod" and "stage"`},
		{[]string{"g", "f", "e", "d", "c", "b", "a"}, `"a", "b", "c", "d", "e" and 2 more`},
	} {
		if got := someNames(tc.names); got != tc.want {
			t.Errorf("someNames(%q) = %s, want %s", tc.names, got, tc.want)
		}
	}
}
