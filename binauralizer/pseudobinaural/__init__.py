"""The visually guided PseudoBinaural U-Net stack (SpatialV2A §3.2, PseudoBinaural).

backbones    -- small vision backbones (MobileNetV2 with real ImageNet weights, ResNet-18 from a checkpoint)
unet         -- the audio-visual U-Net (mask prediction on the mono STFT)
pseudo_pairs -- seeded pseudo-binaural training scenes rendered through HRIRs
training     -- the resumable training loop (one process on CPU, DDP over Ray Train on GPUs)
conversion   -- mono clip + frames -> binaural with a trained model
"""
