"""Phased SFT on trl: knowledge first, then skills with a knowledge replay (the LAB recipe).

config.py       typed phase configs, loaded from YAML presets (phases/<preset>/<phase>.yaml)
data.py         messages JSONL -> validated samples -> token ids + loss labels (masking, replay, length policy)
checkpoints.py  atomic, keep-last-K checkpoint directories and resume discovery
trainer.py      the SFTTrainer subclass (atomic checkpoints, token accounting) and the MLflow callback
stage.py        run_training(TrainingConfig) -> dict: the library entry point of both SFT stages
launch.py       one process per GPU / node (torchrun on CPU, accelerate launch + FSDP on GPUs; PET_* layout)
jobs.py         TrainJob / PyTorchJob manifests (typed models) and their submit-watch-delete lifecycle
task.py         run_sft_task(SftTaskConfig) -> dict: the SFT pipeline task (pod, N processes, or a job)
"""
