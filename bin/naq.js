#!/usr/bin/env -S node --max-semi-space-size=8
// The naq command. V8's semi-spaces (the young generation's halves) at 8 MB, half their
// default, keep a long-running worker's memory flat without costing it CPU. Measured draining
// 50,000-job backlogs, four alternating pairs: 8 MB, 31.9–33.6 µs of CPU a job and peak RSS
// 92–94 MiB; 4 MB (what this line said before), 33.7–56.1 µs and 88–131 MiB (its scavenges
// promote more, and the old generation then grows); the default, 32–38 µs and 107–108 MiB.
// V8 reads it only at startup, hence the flag here rather than in main.ts.
import '../dist/src/main.js';
