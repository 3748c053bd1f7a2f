"""A frame's way through the stages: tracking, the pipeline, the confirmation state machine, enrolment and snapshots."""
