"""The method interface (:mod:`bench.methods.base`) and what methods share: seeded training with
selection on validation (:mod:`bench.methods.training`), prompt-to-image generation
(:mod:`bench.methods.generation`). BrainVis and the baselines live in their own packages and
register through the ``brainvis_bench.plugins`` entry points; :mod:`bench.methods.harness_tests`
holds the harness's own test methods (noop, sleep, burn)."""
