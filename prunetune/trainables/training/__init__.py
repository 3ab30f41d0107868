"""The training side of a trial: data, the teacher, distillation, precision, the optimiser step, filling."""
