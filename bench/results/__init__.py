"""The results stage: trial records on disk (:mod:`bench.results.store`), paired comparisons
(:mod:`bench.results.compare`) and leaderboards rendered purely from records
(:mod:`bench.results.leaderboard`)."""
