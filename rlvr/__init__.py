"""rlvr: reinforcement fine-tuning of reasoning models with verifiable rewards."""

__version__ = "0.1.0"
