"""SpatialV2A trainer: dual-branch conditional flow matching on the dataset's shards (issue 11).

Modules, in data order: stream (shard lists, rank/worker splits), codec (per-ear latents that
keep ITD/IPD) and roundtrip (fit + measure it), encoders (visual, sync, text), features
(companion feature shards), batches (crops, conditions), model (the network), train (loop,
checkpoints, DDP), generate (sampling), evaluate (metrics). Project imports live in deps.
"""
