"""Everything the project draws, in one place: image grids (torchvision's ``make_grid``) and the
latent-space figures (matplotlib ``Figure`` objects, no pyplot state). The TensorBoard callbacks,
``predict``, ``explore`` and the sweep reports all draw with these."""

from vae_lightning.pictures.grids import grid_rows, image_grid, save_image_grid
from vae_lightning.pictures.latent_space import FIGURE_NAMES, latent_figures

__all__ = ["FIGURE_NAMES", "grid_rows", "image_grid", "latent_figures", "save_image_grid"]
