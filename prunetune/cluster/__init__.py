"""prunetune.cluster"""
