"""The evaluation stage: a trial's predictions and images -> metric results with intervals
(:mod:`bench.evaluation.scoring`), folders of images scored (:mod:`bench.evaluation.score_folders`),
the leakage audit (:mod:`bench.evaluation.audit`) and the known-answer checks
(:mod:`bench.evaluation.known_answers`). The metric functions themselves are in :mod:`bench.metrics`."""
