"""The plain nn.Modules: shapes, any depth or size, padding masks, no Lightning needed."""

import pytest
import torch

from litlab.models import CNN, MLP, NETS, RNN, Transformer, build_net


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
    # Features of arrays data (a docs example swept model=mlp,cnn over them): named, not "expected 3, got 1".
    with pytest.raises(ValueError, match=r"^data.input_shape=\[20\]: the Transformer takes images"):
        Transformer([20], 10)
    with pytest.raises(ValueError, match=r"^data.input_shape=\[20\]: the CNN takes images, \[C, H, W\]"):
        CNN([20], 10)


@pytest.mark.parametrize(
    "net,message",
    [
        (lambda: MLP([4], 3, hidden_sizes=[-5]), r"model\.net\.hidden_sizes=\[-5\]: must be a list of integers >= 1"),
        (lambda: MLP([4], 3, hidden_sizes=[8, 0]), r"model\.net\.hidden_sizes=\[8, 0\]: must be"),
        (lambda: CNN([1, 8, 8], 3, channels=[4, -1]), r"model\.net\.channels=\[4, -1\]: must be"),
        (lambda: CNN([1, 8, 8], 3, kernel_size=0), r"model\.net\.kernel_size=0: must be an integer >= 1"),
        (lambda: RNN([4], 3, hidden_size=0), r"model\.net\.hidden_size=0: must be an integer >= 1"),
        (lambda: Transformer([1, 8, 8], 3, n_heads=0), r"model\.net\.n_heads=0: must be an integer >= 1"),
        (lambda: Transformer([1, 8, 8], 3, d_ff=0), r"model\.net\.d_ff=0: must be an integer >= 1 or null"),
        (lambda: Transformer([1, 8, 8], 3, n_layers=-1), r"model\.net\.n_layers=-1: must be an integer >= 1"),
        (lambda: MLP([4], 3, dropout=-0.1), r"model\.net\.dropout=-0.1: must be a probability in \[0, 1\)"),
        (lambda: CNN([1, 8, 8], 3, dropout=1.0), r"model\.net\.dropout=1.0: must be a probability"),
        (lambda: RNN([4], 3, dropout=2), r"model\.net\.dropout=2: must be a probability"),
        (lambda: Transformer([1, 8, 8], 3, dropout=1), r"model\.net\.dropout=1: must be a probability"),
    ],
    ids=[
        *("mlp-negative", "mlp-zero", "cnn-channels", "cnn-kernel", "rnn-width", "transformer-heads", "transformer-ff"),
        *("transformer-depth", "mlp-dropout", "cnn-dropout", "rnn-dropout", "transformer-dropout"),
    ],
)
def test_nets_name_an_argument_that_cannot_work(net, message):
    """torch failed later, naming neither: a negative dimension, an IndexError in the first batch, ZeroDivisionError."""
    with pytest.raises(ValueError, match=f"^{message}"):
        net()


def test_rnn_bidirectional_stack_equals_torchs():
    torch.manual_seed(0)
    net = RNN([12, 5], 3, hidden_size=8, n_layers=2, bidirectional=True).eval()
    ref = torch.nn.LSTM(5, 8, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():  # layer i, direction d of ours is torch's weight_*_l{i}{_reverse}
        for i, layer in enumerate(net.layers):
            suffix = f"l{i // 2}" + ("_reverse" if i % 2 else "")
            for name, p in layer.named_parameters():
                getattr(ref, name.replace("l0", suffix)).copy_(p)
    x = torch.randn(4, 12, 5)
    out, _ = ref(x)
    pooled = torch.cat([out[:, -1, :8], out[:, 0, 8:]], dim=-1)
    torch.testing.assert_close(net(x), net.head(pooled))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_rnn_padding_is_invisible(cell, pooling):
    """A padded sequence gives what the sequence alone gives, in both directions."""
    torch.manual_seed(0)
    net = RNN([10], 3, vocab_size=7, cell=cell, hidden_size=8, n_layers=2, bidirectional=True, pooling=pooling)
    net.eval()
    lengths = [10, 4, 1, 7]
    x = torch.randint(1, 7, (4, 10))
    mask = torch.arange(10) < torch.tensor(lengths)[:, None]
    batch = net(x.masked_fill(~mask, 0), mask)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(batch[b], net(x[b : b + 1, :n])[0])


@pytest.mark.parametrize("shape", [[1, 8, 8], [3, 5, 4], [12, 5], [16]])
def test_rnn_reads_images_rows_feature_sequences_and_vectors(shape):
    net = RNN(shape, 4, hidden_size=8, cell="gru")
    assert net(torch.randn(2, *shape)).shape == (2, 4)


def test_init_schemes_set_weights_and_zero_biases():
    torch.manual_seed(0)
    mlp = build_net("mlp", init="xavier", input_shape=[64], num_outputs=10, hidden_sizes=[256])
    bound = (6 / (64 + 256)) ** 0.5  # xavier_uniform_ on the first 64 -> 256 layer
    first = mlp.layers[1]
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(mlp.head.bias) == 0
    rnn = build_net("rnn", init="orthogonal", input_shape=[6, 5], num_outputs=3, hidden_size=8)
    w = rnn.layers[0].weight_hh_l0  # (4H, H): orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(8), atol=1e-5, rtol=0)
    torch.manual_seed(0)
    default = build_net("mlp", init="default", input_shape=[64], num_outputs=10, hidden_sizes=[256])
    torch.manual_seed(0)
    torch.testing.assert_close(default.head.weight, MLP([64], 10, hidden_sizes=[256]).head.weight)
    with pytest.raises(ValueError, match=r"model.net.init='he' is unknown; choose one of \['default', 'xavier'"):
        build_net("mlp", init="he", input_shape=[4], num_outputs=2)


def test_activation_checkpointing_recomputes_blocks_and_keeps_gradients(monkeypatch):
    from litlab.models.transformer import Block

    calls = []
    forward = Block.forward
    monkeypatch.setattr(Block, "forward", lambda self, *a: calls.append(1) or forward(self, *a))
    grads = []
    for flag in (False, True):
        torch.manual_seed(0)
        net = Transformer([12], 3, vocab_size=9, d_model=16, n_heads=2, dropout=0.1, activation_checkpointing=flag)
        x = torch.randint(0, 9, (4, 12))
        calls.clear()
        torch.manual_seed(1)
        net(x).square().sum().backward()
        assert len(calls) == (4 if flag else 2), "each of the 2 blocks runs again in backward"
        grads.append([p.grad for p in net.parameters()])
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, checkpointed)  # dropout masks replayed: the same gradients


@pytest.mark.parametrize("arch", sorted(NETS))
def test_nets_pickle(arch):
    """ddp_spawn and torch.save(net) pickle the module (hooks included)."""
    import pickle

    shape, extra = ([12], {"vocab_size": 9}) if arch in ("rnn", "transformer") else ([1, 8, 8], {})
    net = build_net(arch, input_shape=shape, num_outputs=3, **extra)
    assert pickle.loads(pickle.dumps(net)).state_dict().keys() == net.state_dict().keys()


def test_build_net_names_the_choices():
    assert set(NETS) == {"mlp", "cnn", "rnn", "transformer"}
    with pytest.raises(ValueError, match=r"model.net.arch='resnet'.*\['cnn', 'mlp', 'rnn', 'transformer'\]"):
        build_net("resnet", input_shape=[1, 8, 8], num_outputs=10)


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation 'swish2' is unknown"):
        MLP([4], 2, hidden_sizes=[3], activation="swish2")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_transformer_names_its_max_len_in_input_tokens(pooling):
    """With pooling=cls the message counted the CLS token on both sides: 34 tokens over max_len=33 for 33 over 32."""
    net = Transformer([32], 2, vocab_size=5, d_model=16, n_heads=2, n_layers=1, max_len=32, pooling=pooling)
    assert net(torch.ones(2, 32, dtype=torch.long)).shape == (2, 2)
    with pytest.raises(ValueError, match=r"^sequence length 33 exceeds model.net.max_len=32$"):
        net(torch.ones(2, 33, dtype=torch.long))
