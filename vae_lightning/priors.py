"""Priors p(z) as small classes handed to the module (``model.prior`` in YAML).

Every prior gives ``log_prob(z)``, seeded draws (``sample``, for ``generate`` and the figures), the
KL term of the loss and its share per latent dimension (the diagnostics):

- :class:`StandardNormal`: N(0, I), the report's prior; KL(q(z|x) || p(z)) in closed form
  (Kingma & Welling 2014, Appendix B; ``vae_lightning.losses.kl_divergence``).
- :class:`MixtureOfGaussians`: sum_k w_k N(m_k, diag s_k^2) with learned means, log-variances and
  weights.
- :class:`VampPrior` (Tomczak & Welling 2018, "VAE with a VampPrior", eq. 9):
  p(z) = 1/K sum_k q(z | u_k), the encoder's own posteriors at K learned pseudo-inputs u_k of the
  image shape.

A mixture has no closed-form KL to a Gaussian posterior, so its KL is the Monte-Carlo estimate
E_q[log q(z|x) - log p(z)] over the same draws of z that score the reconstruction (eq. 3 of the
VampPrior paper). Priors that need the latent size or the encoder get them from the network in
:meth:`Prior.bind`, which the module calls once when it is built.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from vae_lightning.latent import log_posterior, reparameterize
from vae_lightning.losses import kl_divergence, kl_divergence_per_dim
from vae_lightning.models.conditional import conditioning_classes

_LOG_2PI = math.log(2 * math.pi)


class Prior(nn.Module):
    """p(z) over the d latent dimensions. A module, so learned parameters train and are saved with the model."""

    #: How figure titles name the prior.
    label = "p(z)"

    def bind(self, network: nn.Module) -> None:
        """Called once by the module with its network: the latent size d, the image shape and the
        encoder, for priors built from them."""
        self.latent_dim = int(network.latent_dim)

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) for codes (..., d): (...)."""
        raise NotImplementedError

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """``num`` draws (num, d), on the prior's device; the noise is drawn on the CPU, so a seed
        gives the same draws anywhere."""
        raise NotImplementedError

    def kl_divergence(self, mu: Tensor, logvar: Tensor, z: Tensor) -> Tensor:
        """KL(q(z|x) || p(z)) averaged over the batch: the Monte-Carlo estimate over the draws
        ``z`` (N, B, d) of the posteriors ``mu``, ``logvar`` (B, d), unless a subclass has it in
        closed form. 0 for a point-mass posterior (a deterministic network), as for N(0, I)."""
        if torch.isneginf(logvar).all():
            return mu.new_zeros(())
        return (log_posterior(z, mu, logvar) - self.log_prob(z)).mean()

    def kl_divergence_per_dim(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """KL(q(z_i|x) || p(z_i)) of each dimension against the prior's marginal, averaged over
        the batch: (d,). For a factorised prior these sum to the KL term; a mixture couples the
        dimensions, so for it they are one-draw estimates that need not sum to it."""
        raise NotImplementedError

    def quantiles(self, probabilities: Tensor) -> Tensor:
        """The marginal quantiles of each dimension at ``probabilities`` (P,): (P, d); here from
        20,000 seeded draws."""
        draws = self.sample(20000, torch.Generator().manual_seed(0)).float().cpu()
        return torch.quantile(draws, probabilities.float(), dim=0)


class StandardNormal(Prior):
    """N(0, I), the report's prior, with the KL in closed form."""

    label = "N(0, I)"

    def log_prob(self, z: Tensor) -> Tensor:
        return (-0.5 * (z.pow(2) + _LOG_2PI)).sum(dim=-1)

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(num, self.latent_dim, generator=generator)

    def kl_divergence(self, mu: Tensor, logvar: Tensor, z: Tensor) -> Tensor:
        return kl_divergence(mu, logvar)

    def kl_divergence_per_dim(self, mu: Tensor, logvar: Tensor) -> Tensor:
        return kl_divergence_per_dim(mu, logvar)

    def quantiles(self, probabilities: Tensor) -> Tensor:
        return Normal(0.0, 1.0).icdf(probabilities.float())[:, None].expand(-1, self.latent_dim)


class _DiagonalMixture(Prior):
    """sum_k w_k N(m_k, diag s_k^2): subclasses say where the K components come from."""

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        """Means (K, d), log-variances (K, d) and log-weights (K,)."""
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        means, logvars, log_weights = self.components()
        precision = torch.exp(-logvars)  # (K, d)
        flat = z.reshape(-1, z.shape[-1])  # (M, d)
        # sum_i (z_i - m_ki)^2 / s_ki^2 as matrix products: memory M x K, not M x K x d
        squares = flat.pow(2) @ precision.T - 2 * flat @ (means * precision).T + (means.pow(2) * precision).sum(dim=1)
        log_normal = -0.5 * (squares + logvars.sum(dim=1) + z.shape[-1] * _LOG_2PI)  # (M, K)
        return torch.logsumexp(log_normal + log_weights, dim=1).reshape(z.shape[:-1])

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        means, logvars, log_weights = self.components()
        which = torch.multinomial(log_weights.detach().exp().cpu(), num, replacement=True, generator=generator)
        eps = torch.randn(num, means.shape[1], generator=generator).to(means)
        which = which.to(means.device)
        return means[which] + torch.exp(0.5 * logvars[which]) * eps

    def kl_divergence_per_dim(self, mu: Tensor, logvar: Tensor) -> Tensor:
        if torch.isneginf(logvar).all():
            return mu.new_zeros(mu.shape[1])
        means, logvars, log_weights = self.components()
        z = reparameterize(mu, logvar)[0]  # (B, d), one draw per image
        log_q = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z)  # (B, d)
        log_p = torch.logsumexp(Normal(means, torch.exp(0.5 * logvars)).log_prob(z[:, None]) + log_weights[:, None], dim=1)
        return (log_q - log_p).mean(dim=0)


class MixtureOfGaussians(_DiagonalMixture):
    """A learned mixture of K diagonal Gaussians.

    Args:
        components: K, the number of Gaussians.
        init_spread: the means start as draws of N(0, init_spread^2 I); the variances at 1 and
            the weights equal.
    """

    def __init__(self, components: int = 10, init_spread: float = 1.0) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"model.prior.init_args.components (MixtureOfGaussians' K) must be at least 1, got {components}")
        if init_spread < 0:
            raise ValueError(f"model.prior.init_args.init_spread must be >= 0, got {init_spread}")
        self.num_components = components
        self.init_spread = init_spread

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"a mixture of {self.num_components} Gaussians"

    def bind(self, network: nn.Module) -> None:
        super().bind(network)
        self.means = nn.Parameter(self.init_spread * torch.randn(self.num_components, self.latent_dim))
        self.logvars = nn.Parameter(torch.zeros(self.num_components, self.latent_dim))
        self.weight_logits = nn.Parameter(torch.zeros(self.num_components))

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.means, self.logvars, torch.log_softmax(self.weight_logits, dim=0)


class VampPrior(_DiagonalMixture):
    """The VampPrior (Tomczak & Welling 2018): p(z) = 1/K sum_k q(z | u_k), the encoder's posteriors
    at K learned pseudo-inputs u_k, images of the data's shape kept in (0, 1) as the sigmoid of a
    parameter that starts at N(0, 1) (random grey images).

    Args:
        components: K, the number of pseudo-inputs (500 in the paper's MNIST experiments).
        image_shape: the pseudo-inputs' (channels, height, width), which must be the network's;
            ``None``: the network's (the data's).
    """

    def __init__(self, components: int = 500, image_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"model.prior.init_args.components (VampPrior's K pseudo-inputs) must be at least 1, got {components}")
        self.num_components = components
        self.image_shape = None if image_shape is None else tuple(int(n) for n in image_shape)

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"a VampPrior of {self.num_components} pseudo-inputs"

    def bind(self, network: nn.Module) -> None:
        super().bind(network)
        shape = tuple(getattr(network, "image_shape", ()) or ())
        if self.image_shape is not None and self.image_shape != shape:
            raise ValueError(
                f"model.prior.init_args.image_shape {list(self.image_shape)} (VampPrior's pseudo-inputs) does not match "
                f"the network's image shape {list(shape)} (model.network.init_args.image_shape, set from the data); "
                "set the prior's image_shape to null to take the network's"
            )
        if len(shape) != 3:
            raise ValueError(f"model.prior: a VampPrior needs a network with an image_shape, {type(network).__name__} has none")
        if conditioning_classes(network) is not None:
            raise ValueError(
                f"model.prior: a VampPrior's pseudo-inputs are images without a class, but model.network "
                f"{type(network).__name__} conditions its encoder on one (num_classes {conditioning_classes(network)}); "
                "use --model.prior vae_lightning.priors.StandardNormal or MixtureOfGaussians with a conditional network, "
                "or a network that does not condition with the VampPrior"
            )
        self.image_shape = shape
        self.pseudo_logits = nn.Parameter(torch.randn(self.num_components, *shape))
        self._encode = network.encode  # a bound method, not a submodule: the network's weights stay its own

    def pseudo_inputs(self) -> Tensor:
        """The K pseudo-inputs u_k, (K, C, H, W) in (0, 1)."""
        return torch.sigmoid(self.pseudo_logits)

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        means, logvars = self._encode(self.pseudo_inputs())
        return means, logvars, means.new_full((self.num_components,), -math.log(self.num_components))
