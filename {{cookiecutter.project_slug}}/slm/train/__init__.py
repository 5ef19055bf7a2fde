"""Fine-tuning: data checks and splits, the schedule, checkpoints, the config check, the training report,
the pre-processing Olive runs and the Azure ML job."""
