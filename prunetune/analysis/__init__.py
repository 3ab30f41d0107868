"""prunetune.analysis"""
