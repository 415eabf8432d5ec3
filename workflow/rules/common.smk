# Helpers shared by the rules. PARAMS is the file every `ltm` command reads.
from ltm.config import subset
from ltm.stages import STAGE_PARAMS

PARAMS = "params.yaml"


def stage_params(stage):
    """The params sections a stage reads, declared as `params:` so that a change reruns it."""
    return {key.replace(".", "__").replace("-", "_"): value
            for key, value in subset(config, STAGE_PARAMS[stage]).items()}
