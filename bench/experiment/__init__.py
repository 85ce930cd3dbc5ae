"""The experiment stage: a grid file -> trial specs (:mod:`bench.experiment.grid`), one trial run end to
end (:mod:`bench.experiment.trial`), trials in parallel on Ray Tune (:mod:`bench.experiment.runner`),
and what a run reports about itself (progress, memory, timings)."""
