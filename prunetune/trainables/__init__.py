"""prunetune.trainables"""
