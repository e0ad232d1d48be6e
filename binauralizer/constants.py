"""The pipeline's one sample rate.

Every model, metric and file in the project is defined at 16 kHz (PseudoBinaural's U-Net, YAMNet,
Audiobox Aesthetics, the metric windows); HRIRs are resampled to it. It is a constant, not a
setting: a run at another rate would silently mismatch every model.
"""

SAMPLE_RATE = 16000
