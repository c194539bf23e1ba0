"""fastnet's airbench-style recipe: the parts whose bugs would only show up as a few points of lost accuracy."""
import torch

from visiontrain.models.fast import Whitening


def test_whitening_decorrelates_colour_patches():
    # Colour images are where the filter layout matters: a 1-channel test cannot tell (c, h, w) from (h, c, w).
    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1000, 3, 18, 18), 3, 1)  # neighbouring pixels correlate
    mix = torch.tensor([[1.0, 0.8, 0.6], [0.2, 1.0, 0.5], [0.1, 0.3, 1.0]])  # and so do the channels
    images = torch.einsum("ij,njhw->nihw", mix, smooth)
    layer = Whitening(3)
    layer.fit(images)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, layer.weight[:12])
    covariance = torch.cov(out.permute(1, 0, 2, 3).reshape(12, -1))
    assert torch.allclose(covariance, torch.eye(12), atol=0.2)  # eps damps the smallest eigenvalues a little
