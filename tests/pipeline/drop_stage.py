"""A plug-in filter for the stage-order test: drops the clips whose label is listed."""

from stages.base import DROPPED, KEPT, Params, Stage, settings


@settings
class DropParams(Params):
    labels: list[str] = ()


class DropLabelStage(Stage):
    name = "drop_label"
    kind = "task"
    Params = DropParams
    decision_keys = ("labels",)

    def decide(self, row):
        if row.get("label") in self.params.labels:
            return DROPPED, f"label excluded: {row['label']}"
        return KEPT, ""
