"""The plain nn.Modules: shapes, any depth or size, padding masks, no Lightning needed."""

import pytest
import torch

from litlab.models import CNN, MLP, NETS, Transformer, build_net


@pytest.mark.parametrize("hidden", [[], [16], [32, 16, 8, 4]])
def test_mlp_any_depth(hidden):
    net = MLP([1, 8, 8], 10, hidden_sizes=hidden, batch_norm=True, dropout=0.2, activation="gelu")
    assert net(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    assert sum(isinstance(m, torch.nn.Linear) for m in net.modules()) == len(hidden) + 1


@pytest.mark.parametrize("shape", [[1, 8, 8], [1, 28, 28], [3, 32, 32], [3, 17, 23]])
def test_cnn_any_input_size_and_channels(shape):
    net = CNN(shape, 7, channels=[8, 16, 16])
    assert net(torch.randn(2, *shape)).shape == (2, 7)


def test_transformer_on_images_and_cls_pooling():
    for pooling in ("mean", "cls"):
        net = Transformer([1, 28, 28], 10, patch_size=7, d_model=32, n_layers=2, n_heads=4, pooling=pooling)
        assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_transformer_padding_is_invisible(pooling):
    """Changing what sits under the padding mask must not change the output."""
    torch.manual_seed(0)
    net = Transformer([12], 3, vocab_size=9, d_model=32, n_layers=2, n_heads=4, pooling=pooling).eval()
    x = torch.randint(1, 9, (4, 12))
    mask = torch.ones(4, 12, dtype=torch.bool)
    mask[0, 5:] = False
    mask[2, 1:] = False
    other = x.clone()
    other[~mask] = 0
    torch.testing.assert_close(net(x, mask), net(other, mask))
    assert not torch.allclose(net(x), net(other)), "without a mask the padding should matter"


def test_transformer_rejects_bad_geometry():
    with pytest.raises(ValueError, match="patch_size=3 must divide"):
        Transformer([1, 8, 8], 10, patch_size=3)
    with pytest.raises(ValueError, match=r"divisible by model\.net\.n_heads"):
        Transformer([1, 8, 8], 10, d_model=30, n_heads=4)


def test_build_net_names_the_choices():
    assert set(NETS) == {"mlp", "cnn", "transformer"}
    with pytest.raises(ValueError, match=r"model.net.arch='resnet'.*\['cnn', 'mlp', 'transformer'\]"):
        build_net("resnet", input_shape=[1, 8, 8], num_outputs=10)


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation 'swish2' is unknown"):
        MLP([4], 2, hidden_sizes=[3], activation="swish2")
