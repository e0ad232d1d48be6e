"""shard: the dataset's WebDataset tars from the members `package` staged (output/shards.py).

The only global part of packaging: plan which sample goes into which shard (sorted by split and key,
sizes exact, so a rerun makes the same plan) and stream the staged files into deterministic tars with
output.shards.ShardWriter. A shard whose stats file matches the plan is skipped; with keep_staging
false a clip's staged members are deleted once its shard is complete. A sample whose members are gone
(deleted after an earlier run) but whose shard must be rewritten is staged again here, by `package`'s
own code, so nothing is ever lost.
"""

from __future__ import annotations

import shutil

from manifests import artifacts as A
from output.shards import GiB, Entry, ShardWriter
from stages.base import ConfigError, Params, Stage, StageError, settings
from stages.package import PACKAGE_COLUMNS, PackageStage, staged_members


@settings
class ShardParams(Params):
    max_shard_bytes: int = GiB
    max_samples_per_shard: int = 10000
    keep_staging: bool = False  # keep work/package/<clip>/ after its shard is complete

    def validate(self) -> None:
        if self.max_shard_bytes < 1 << 20:
            raise ConfigError("stages.shard.max_shard_bytes: must be at least 1 MiB")
        if self.max_samples_per_shard < 1:
            raise ConfigError("stages.shard.max_samples_per_shard: must be >= 1")


class ShardStage(Stage):
    name = "shard"
    version = "2"
    Params = ShardParams
    kind = "global"
    data_deps = ("package",)
    reads = ("clip_id",) + PACKAGE_COLUMNS
    writes = ("shard", "shard_index")

    def _members(self, row: dict):
        """The staged members; staged again (same code, same bytes) when an earlier run deleted them."""
        members = staged_members(self.ctx.out, row)
        if members is not None:
            return members
        params = (self.ctx.extra.get("stage_params") or {}).get("package")
        if params is None:
            raise StageError(f"staged members of {row['clip_id']} are gone: rerun with --from package")
        stage = PackageStage(params, self.ctx)
        stage.stage_sample(row, row["package_fingerprint"])
        return staged_members(self.ctx.out, row)

    def run_global(self, rows: list[dict]) -> list[dict]:
        p = self.params
        out: list[dict] = [{} for _ in rows]
        counts: dict[str, int] = {}
        for row in rows:
            counts[str(row["clip_id"])] = counts.get(str(row["clip_id"]), 0) + 1
        commit = self.commit  # set by the runner for an object-store OUT
        writer = ShardWriter(A.resolve(self.ctx.out, "shards"), p.max_shard_bytes, p.max_samples_per_shard,
                             committed=commit, stored_size=getattr(commit, "stored_size", None))
        done = writer.completed_samples()
        entries = []
        for i, row in enumerate(rows):
            key = str(row["clip_id"])
            if counts[key] > 1:
                out[i] = {"_error": f"shard: duplicate clip_id {key!r}"}
                continue
            if done.get(key, ("",))[0] != row.get("package_fingerprint"):  # its shard will be written
                try:
                    self._members(row)
                except (StageError, ValueError, OSError) as exc:
                    out[i] = {"_error": f"shard: {exc}"}
                    continue
            release = None
            if not p.keep_staging:
                folder = A.resolve(self.ctx.out, A.package(key))
                release = (lambda f=folder: shutil.rmtree(f, ignore_errors=True))
            entries.append(Entry(key, str(row["sample_split"]), str(row["package_fingerprint"]),
                                 build=(lambda r=row: self._members(r)), release=release))
        result = writer.write(entries)
        if commit is not None:  # shards the plan dropped and staging released once its shard was whole
            commit([], prune=["shards", A.WORK + "/package"])
        for i, row in enumerate(rows):
            if not out[i]:
                shard, position = result.location[str(row["clip_id"])]
                out[i] = {"shard": shard, "shard_index": position}
        return out
