package loadtest

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Inline SVG charts for the HTML report: no script, no external asset.

// series is one line of a chart.
type series struct {
	Name  string
	Color string
	Pts   [][2]float64
	// Dash draws the line dashed.
	Dash bool
}

// palette colours series in order.
var palette = []string{"#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d", "#525252"}

// chart describes a line chart.
type chart struct {
	Title  string
	XLabel string
	YLabel string
	Series []series
	LogY   bool
	// XTicks, when set, replaces the computed x ticks: value → label.
	XTicks [][2]any
	// YMin forces the bottom of a linear y axis (default 0).
	W, H int
}

const (
	padL, padR, padT, padB = 64, 16, 30, 46
)

// svgStyle goes inside every chart, so that a chart saved as its own .svg
// file looks the same as inline in the report.
const svgStyle = `<style>text{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif}` +
	`.ct{font-size:13px;font-weight:600;fill:#111}.grid{stroke:#eef0f3}.frame{fill:none;stroke:#9ca3af}` +
	`.yl{font-size:11px;fill:#4b5563;text-anchor:end}.xl{font-size:11px;fill:#4b5563;text-anchor:middle}` +
	`.axl{font-size:11px;fill:#6b7280;text-anchor:middle}.lg{font-size:11px;fill:#374151}.na{fill:#9ca3af}</style>` +
	`<rect width="100%" height="100%" fill="#fff"/>`

// svg renders the chart.
func (c chart) svg() string {
	if c.W == 0 {
		c.W = 760
	}
	if c.H == 0 {
		c.H = 280
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" class="chart" role="img" aria-label="%s">%s`,
		c.W, c.H, c.W, c.H, html.EscapeString(c.Title), svgStyle)
	fmt.Fprintf(&b, `<text x="%d" y="18" class="ct">%s</text>`, padL, html.EscapeString(c.Title))
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	n := 0
	for _, s := range c.Series {
		for _, p := range s.Pts {
			if math.IsNaN(p[1]) || math.IsInf(p[1], 0) || (c.LogY && p[1] <= 0) {
				continue
			}
			xmin, xmax = math.Min(xmin, p[0]), math.Max(xmax, p[0])
			ymin, ymax = math.Min(ymin, p[1]), math.Max(ymax, p[1])
			n++
		}
	}
	pw, ph := float64(c.W-padL-padR), float64(c.H-padT-padB)
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="na">no data</text></svg>`, c.W/2-30, c.H/2)
		return b.String()
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	// Y scale.
	var yTicks []float64
	var ylo, yhi float64
	if c.LogY {
		ylo = math.Pow(10, math.Floor(math.Log10(ymin)))
		yhi = math.Pow(10, math.Ceil(math.Log10(ymax)))
		if yhi <= ylo {
			yhi = ylo * 10
		}
		for v := ylo; v <= yhi*1.0001; v *= 10 {
			yTicks = append(yTicks, v)
		}
	} else {
		ylo = 0
		if ymin < 0 {
			ylo = ymin
		}
		step := niceStep((ymax - ylo) / 5)
		yhi = math.Ceil(ymax/step) * step
		if yhi <= ylo {
			yhi = ylo + step
		}
		for v := ylo; v <= yhi+step/1000; v += step {
			yTicks = append(yTicks, v)
		}
	}
	xpos := func(x float64) float64 { return float64(padL) + (x-xmin)/(xmax-xmin)*pw }
	ypos := func(y float64) float64 {
		if c.LogY {
			return float64(padT) + ph - (math.Log10(y)-math.Log10(ylo))/(math.Log10(yhi)-math.Log10(ylo))*ph
		}
		return float64(padT) + ph - (y-ylo)/(yhi-ylo)*ph
	}
	// Grid and axes.
	for _, v := range yTicks {
		y := ypos(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="grid"/>`, padL, y, c.W-padR, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" class="yl">%s</text>`, padL-6, y+4, fmtTick(v))
	}
	if len(c.XTicks) > 0 {
		for _, t := range c.XTicks {
			x := xpos(t[0].(float64))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="grid"/>`, x, padT, x, c.H-padB)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="xl">%s</text>`, x, c.H-padB+16, html.EscapeString(t[1].(string)))
		}
	} else {
		step := niceStep((xmax - xmin) / 8)
		for v := math.Ceil(xmin/step) * step; v <= xmax+step/1000; v += step {
			x := xpos(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="grid"/>`, x, padT, x, c.H-padB)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="xl">%s</text>`, x, c.H-padB+16, fmtTick(v))
		}
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" class="frame"/>`, padL, padT, pw, ph)
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" class="axl">%s</text>`, float64(padL)+pw/2, c.H-8, html.EscapeString(c.XLabel))
	fmt.Fprintf(&b, `<text x="14" y="%.0f" class="axl" transform="rotate(-90 14 %.0f)">%s</text>`, float64(padT)+ph/2, float64(padT)+ph/2, html.EscapeString(c.YLabel))
	// Lines, with a dot per point when there are few.
	for i, s := range c.Series {
		col := s.Color
		if col == "" {
			col = palette[i%len(palette)]
		}
		var pts []string
		for _, p := range s.Pts {
			if math.IsNaN(p[1]) || math.IsInf(p[1], 0) || (c.LogY && p[1] <= 0) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xpos(p[0]), ypos(p[1])))
		}
		dash := ""
		if s.Dash {
			dash = ` stroke-dasharray="5 3"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8"%s points="%s"><title>%s</title></polyline>`,
			col, dash, strings.Join(pts, " "), html.EscapeString(s.Name))
		if len(pts) <= 40 {
			for _, p := range pts {
				x, y, _ := strings.Cut(p, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2.5" fill="%s"/>`, x, y, col)
			}
		}
		// Legend.
		lx := padL + 8 + i*130
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/><text x="%d" y="%d" class="lg">%s</text>`,
			lx, padT+8, col, lx+16, padT+12, html.EscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// niceStep rounds a raw step up to 1, 2 or 5 × 10^n.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// fmtTick formats an axis value compactly: 1.5k, 2M, 0.01.
func fmtTick(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case a >= 1e4:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case a >= 10 || a == 0:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return trimZero(fmt.Sprintf("%.1f", v))
	default:
		return trimZero(fmt.Sprintf("%.3f", v))
	}
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// percentileX maps a percentile to the x of an HDR percentile plot:
// 90% → 1, 99% → 2, 99.9% → 3 …; 100% is drawn at 6.
func percentileX(p float64) float64 {
	if p >= 100 {
		return 6
	}
	return math.Min(6, -math.Log10(1-p/100))
}

// percentileTicks label an HDR percentile plot's x axis.
var percentileTicks = [][2]any{
	{0.0, "0%"}, {1.0, "90%"}, {2.0, "99%"}, {3.0, "99.9%"}, {4.0, "99.99%"}, {5.0, "99.999%"}, {6.0, "max"},
}

// barChart draws one bar per label, coloured by ok.
func barChart(title, yLabel string, labels []string, values []float64, ok []bool, goal float64) string {
	w, h := 760, 260
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" class="chart" role="img" aria-label="%s">%s`,
		w, h, w, h, html.EscapeString(title), svgStyle)
	fmt.Fprintf(&b, `<text x="%d" y="18" class="ct">%s</text>`, padL, html.EscapeString(title))
	if len(values) == 0 {
		b.WriteString(`<text x="350" y="130" class="na">no data</text></svg>`)
		return b.String()
	}
	vmax := goal
	for _, v := range values {
		vmax = math.Max(vmax, v)
	}
	step := niceStep(vmax / 5)
	top := math.Ceil(vmax/step) * step
	if top == 0 {
		top = 1
	}
	pw, ph := float64(w-padL-padR), float64(h-padT-padB)
	ypos := func(v float64) float64 { return float64(padT) + ph - v/top*ph }
	for v := 0.0; v <= top+step/1000; v += step {
		y := ypos(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="grid"/><text x="%d" y="%.1f" class="yl">%s</text>`,
			padL, y, w-padR, y, padL-6, y+4, fmtTick(v))
	}
	bw := pw / float64(len(values))
	for i, v := range values {
		col := "#16a34a"
		if i < len(ok) && !ok[i] {
			col = "#dc2626"
		}
		x := float64(padL) + float64(i)*bw + bw*0.15
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>`,
			x, ypos(v), bw*0.7, float64(padT)+ph-ypos(v), col, html.EscapeString(labels[i]), thousands(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="xl">%s</text>`, x+bw*0.35, h-padB+16, html.EscapeString(labels[i]))
	}
	if goal > 0 {
		y := ypos(goal)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#111" stroke-dasharray="6 4"/><text x="%d" y="%.1f" class="lg">goal %s</text>`,
			padL, y, w-padR, y, w-padR-90, y-4, thousands(goal))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" class="frame"/>`, padL, padT, pw, ph)
	fmt.Fprintf(&b, `<text x="14" y="%.0f" class="axl" transform="rotate(-90 14 %.0f)">%s</text>`, float64(padT)+ph/2, float64(padT)+ph/2, html.EscapeString(yLabel))
	b.WriteString(`</svg>`)
	return b.String()
}
