package checker

import (
	"strings"
	"testing"
)

func id(s string) MsgID { return MsgID{From: "u", CMID: s} }

func TestVerdicts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(c *Checker)
		want Report
	}{
		{"clean", func(c *Checker) {
			c.Joined("a", "r", 0)
			c.Sent("r", id("1"))
			c.Acked("r", id("1"), 1)
			c.Delivered("a", "r", 1, id("1"), Live)
		}, Report{Sent: 1, Acked: 1, Delivered: 1}},
		{"lost", func(c *Checker) {
			c.Joined("a", "r", 0)
			c.Sent("r", id("1"))
			c.Acked("r", id("1"), 1)
		}, Report{Sent: 1, Acked: 1, Lost: 1}},
		{"before join is not expected", func(c *Checker) {
			c.Sent("r", id("1"))
			c.Acked("r", id("1"), 1)
			c.Joined("a", "r", 1)
		}, Report{Sent: 1, Acked: 1}},
		{"after leave is not expected", func(c *Checker) {
			c.Joined("a", "r", 0)
			c.Left("a", "r", 0)
			c.Sent("r", id("1"))
			c.Acked("r", id("1"), 1)
		}, Report{Sent: 1, Acked: 1}},
		{"duplicate and reorder", func(c *Checker) {
			c.Joined("a", "r", 0)
			for i, s := range []string{"1", "2"} {
				c.Sent("r", id(s))
				c.Acked("r", id(s), uint64(i+1))
			}
			c.Delivered("a", "r", 2, id("2"), Live)
			c.Delivered("a", "r", 1, id("1"), Recovered)
			c.Delivered("a", "r", 1, id("1"), Live)
		}, Report{Sent: 2, Acked: 2, Delivered: 2, Duplicated: 1, Reordered: 1, Recovered: 1}},
		{"history delivered before the join returns", func(c *Checker) {
			c.Sent("r", id("1"))
			c.Acked("r", id("1"), 1)
			c.Delivered("a", "r", 1, id("1"), Recovered)
			c.Joined("a", "r", 1)
			c.Sent("r", id("2"))
			c.Acked("r", id("2"), 2)
		}, Report{Sent: 2, Acked: 2, Delivered: 1, Recovered: 1, Lost: 1}},
		{"reset is not lost", func(c *Checker) {
			c.Joined("a", "r", 0)
			c.Sent("r", id("1"))
			c.Acked("r", id("1"), 1)
			c.Reset("a", "r", 0, 1)
		}, Report{Sent: 1, Acked: 1, ResetLost: 1}},
		{"unacked is not lost", func(c *Checker) {
			c.Joined("a", "r", 0)
			c.Sent("r", id("1"))
		}, Report{Sent: 1, Unacked: 1}},
	}
	for _, tc := range cases {
		c := New()
		tc.run(c)
		got := c.Report()
		got.LostExamples = nil
		if got.Sent != tc.want.Sent || got.Acked != tc.want.Acked || got.Delivered != tc.want.Delivered ||
			got.Lost != tc.want.Lost || got.Duplicated != tc.want.Duplicated || got.Reordered != tc.want.Reordered ||
			got.Recovered != tc.want.Recovered || got.Unacked != tc.want.Unacked || got.ResetLost != tc.want.ResetLost || len(got.Diverged) != 0 {
			t.Fatalf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
		if got.OK() != (tc.want.Lost == 0 && tc.want.Duplicated == 0 && tc.want.Reordered == 0) {
			t.Fatalf("%s: OK() = %v", tc.name, got.OK())
		}
	}
}

func TestDivergence(t *testing.T) {
	t.Parallel()
	c := New()
	c.Joined("a", "r", 0)
	c.Joined("b", "r", 0)
	c.Delivered("a", "r", 1, id("x"), Live)
	c.Delivered("b", "r", 1, id("y"), Live)
	r := c.Report()
	if len(r.Diverged) != 1 || r.OK() {
		t.Fatalf("two messages under one seq not flagged: %+v", r)
	}
	var b strings.Builder
	r.WriteTable(&b)
	if !strings.Contains(b.String(), "diverged") {
		t.Fatal(b.String())
	}
}
