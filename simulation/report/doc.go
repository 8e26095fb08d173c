// Package report renders a simulation.Result as one self-contained HTML
// page: a summary table and charts drawn as inline SVG, with inline CSS,
// no script and no fetch, so that the file can be mailed, attached to an
// issue or opened offline and shows the same everywhere. peersim writes
// it with -report.
//
// The page is a list of Sections. New builds the sections of what a
// Result measures (connectivity over time, reconnect times, dead-link
// detection); a new measure gets its section from one function that
// turns its data into the chart primitives here:
//
//   - LineChart: series over a shared x axis, straight or as a staircase
//     (counts over time), with optional vertical marks (faults);
//   - CDF: the empirical distribution of sets of samples;
//   - Scatter: dots, such as a measure against the truth;
//   - Bars: grouped bars, such as percentiles by cause or a measure by
//     strategy.
//
// Each takes plain data (float64 pairs or values, and names) and draws
// its own axes, ticks and legend. Output is a function of the input
// alone, byte for byte, so a report can be compared with an earlier one.
package report
