"""The physics and models that turn mono audio into binaural audio.

hrir       -- measured HRIR sets (SOFA), resampled to the pipeline rate, direction lookup
sh_render  -- static rendering: spherical-harmonic pseudo-binaural (SpatialV2A eq. 1) and direct HRIR
moving     -- moving sources along a trajectory (FoleySpace section IV)
foa        -- first-order Ambisonics with camera rotation (ViSAudio)

Submodules are imported on use; importing this package loads nothing heavy.
"""
