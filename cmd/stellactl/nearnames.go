package main

import (
	"slices"
	"strings"
)

// maxSuggestions bounds a "did you mean": more than a few candidates is a
// list, not a suggestion.
const maxSuggestions = 3

// nearNames returns the candidates close enough to name to be what was
// meant, the closest first (ties by name), at most maxSuggestions. Close
// enough is an edit distance of at most a third of the name's length, and
// at least 1 and at most 2 edits either way: a short name with three typos
// is another name. Case does not count, and a candidate that starts with a
// name of three or more characters (typed without its suffix) is close.
func nearNames(name string, candidates []string) []string {
	type near struct {
		name     string
		distance int
	}
	limit := min(max(len(name)/3, 1), 2)
	var found []near
	for _, c := range candidates {
		if c == name {
			continue
		}
		d := editDistance(strings.ToLower(name), strings.ToLower(c))
		if d <= limit || (len(name) >= 3 && strings.HasPrefix(c, name)) {
			found = append(found, near{c, d})
		}
	}
	slices.SortFunc(found, func(a, b near) int {
		if a.distance != b.distance {
			return a.distance - b.distance
		}
		return strings.Compare(a.name, b.name)
	})
	var names []string
	for _, n := range found[:min(len(found), maxSuggestions)] {
		names = append(names, n.name)
	}
	return names
}

// editDistance is the optimal string alignment distance between a and b:
// the fewest insertions, deletions, substitutions and swaps of two adjacent
// bytes that turn a into b. A swap counts once because "prdo" for "prod" is
// one slip of the fingers, not two. Names are DNS labels, so bytes are
// characters.
func editDistance(a, b string) int {
	// rows[i][j] is the distance between a[:i] and b[:j]; only the last
	// three rows are needed.
	prev2, prev, cur := make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
