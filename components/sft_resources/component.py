"""KFP component: the SFT tasks' own pod resources, light when a TrainJob / PyTorchJob does the training."""

from typing import NamedTuple

from kfp import dsl
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("taxonomy"))
def sft_resources(
    training_backend: str,
    training_nodes: int,
    gpus: int,
    training_cpu_request: str,  # not cpu_request etc.: KFP names the task's own resource inputs so
    training_cpu_limit: str,
    training_memory_request: str,
    training_memory_limit: str,
    node_selector: dict,
) -> NamedTuple("Resources", gpus=int, cpu_request=str, cpu_limit=str, memory_request=str, memory_limit=str,
                node_selector=dict):  # fmt: skip
    """In pod mode the training settings as given; in job mode (training_backend trainjob | pytorchjob, or
    training_nodes > 1) no GPU, no GPU node selector and small requests: the pod only submits and follows the job."""
    from labpipe.training.task import launcher_resources

    r = launcher_resources(training_backend, training_nodes, gpus, training_cpu_request, training_cpu_limit,
                           training_memory_request, training_memory_limit, node_selector)  # fmt: skip
    return (
        r["gpus"],
        r["cpu_request"],
        r["cpu_limit"],
        r["memory_request"],
        r["memory_limit"],
        r["node_selector"],
    )
