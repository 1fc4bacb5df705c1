"""Sample quality measured offline: a small classifier the project trains on each dataset's labelled
training split is the feature network of FID, KID and precision/recall (``SampleQuality``), in place
of the Inception network those metrics usually download. ``weights/mnist.pt`` ships with the package."""

from vae_lightning.quality.metrics import SampleQuality
from vae_lightning.quality.network import FeatureNetwork, LoadedFeatureNetwork, load_feature_network

__all__ = ["FeatureNetwork", "LoadedFeatureNetwork", "SampleQuality", "load_feature_network"]
