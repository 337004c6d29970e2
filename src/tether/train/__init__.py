"""Training: contrastive steps at any batch size, schedules, optimizer groups, the trainer."""
