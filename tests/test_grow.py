"""Growing a model deeper (samba_cli.train.grow): the grown model computes what the original did, and trains."""

import pytest
import torch
from typer.testing import CliRunner

from samba_cli.errors import OptionError
from samba_cli.model import load_checkpoint, save_checkpoint
from samba_cli.model.checkpoint import read_config_file
from samba_cli.train.grow import expansion_plan, grow_model
from samba_cli.train.objective import decoder_io, joint_loss
from tests.model_helpers import tiny_model


def test_expansion_plan_spreads_the_new_blocks():
    assert expansion_plan(6, 8) == [0, 1, 2, None, 3, 4, 5, None]
    assert expansion_plan(2, 3) == [0, 1, None]
    assert expansion_plan(4, 6) == [0, 1, None, 2, 3, None]
    assert expansion_plan(2, 5) == [0, None, 1, None, None]
    assert expansion_plan(1, 3) == [0, None, None]
    assert expansion_plan(3, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="only adds"):
        expansion_plan(4, 2)


def _inputs(model, batch=3, frames=90, length=7):
    torch.manual_seed(1)
    features = torch.randn(batch, model.config.n_mels, frames)
    lengths = torch.tensor([frames, frames - 17, frames - 40])
    tokens = torch.randint(4, model.config.vocab_size, (batch, length))
    return features, lengths, tokens


def test_the_grown_model_computes_what_the_original_did():
    torch.manual_seed(0)
    model = tiny_model(encoder_layers=2, decoder_layers=1)
    grown = grow_model(model, encoder_layers=5, decoder_layers=2)
    assert (grown.config.encoder_layers, grown.config.decoder_layers) == (5, 2)
    assert grown.num_parameters() > model.num_parameters()
    features, lengths, tokens = _inputs(model)
    with torch.no_grad():
        before, after = model(features, lengths, tokens), grown(features, lengths, tokens)
    torch.testing.assert_close(after.ctc_logits, before.ctc_logits)
    torch.testing.assert_close(after.logits, before.logits)
    # step-by-step decoding too (the decoder's recurrent path)
    with torch.no_grad():
        states, enc_lengths = model.encode(features, lengths)
        state_a, state_b = (
            model.allocate_state(states, enc_lengths),
            grown.allocate_state(states, enc_lengths),
        )
        for t in range(tokens.shape[1]):
            torch.testing.assert_close(grown.step(tokens[:, t], state_b), model.step(tokens[:, t], state_a))
    # the original blocks are unchanged, the inserted ones are copies of the block below with zero outputs
    assert torch.equal(grown.encoder.blocks[1].mlp.up.weight, model.encoder.blocks[0].mlp.up.weight)
    assert torch.equal(grown.encoder.blocks[1].mlp.up.weight, grown.encoder.blocks[0].mlp.up.weight)
    assert not grown.encoder.blocks[1].mlp.down.weight.any()
    assert not grown.encoder.blocks[1].mixer.backward_mixer.out_proj.weight.any()
    assert not grown.decoder.blocks[1].cross.out_proj.weight.any()
    # a copy: training the grown model leaves the original alone
    grown.encoder.blocks[0].mlp.up.weight.data.add_(1.0)
    assert not torch.equal(grown.encoder.blocks[0].mlp.up.weight, model.encoder.blocks[0].mlp.up.weight)


def test_the_inserted_blocks_get_gradients():
    torch.manual_seed(0)
    grown = grow_model(tiny_model(encoder_layers=1, decoder_layers=1), encoder_layers=2).train()
    features, lengths, tokens = _inputs(grown)
    token_lengths = torch.full((tokens.shape[0],), tokens.shape[1])
    inputs, targets = decoder_io(tokens, token_lengths, grown.config)
    out = grown(features, lengths, inputs)
    joint_loss(out, tokens, token_lengths, targets, grown.config, 0.3, 0.1).total.backward()
    new = grown.encoder.blocks[1]
    for projection in (new.mixer.forward_mixer.out_proj, new.mixer.backward_mixer.out_proj, new.mlp.down):
        assert projection.weight.grad.abs().sum() > 0


def test_growing_refuses_fewer_layers():
    with pytest.raises(OptionError, match="--encoder-layers 1: the model has 2") as error:
        grow_model(tiny_model(encoder_layers=2), encoder_layers=1)
    assert error.value.option == "--encoder-layers"


def test_grow_command_writes_a_model_folder(tmp_path):
    from samba_cli.cli import app

    torch.manual_seed(0)
    model = tiny_model(encoder_layers=2)
    folder = save_checkpoint(model, tmp_path / "model", metadata={"name": "tiny"})
    runner = CliRunner()
    out = tmp_path / "grown"
    result = runner.invoke(app, ["train", "grow", str(folder), "--encoder-layers", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{out}: 3 encoder and 2 decoder layers" in result.output
    grown = load_checkpoint(out, backend="torch")
    assert grown.config.encoder_layers == 3
    metadata = read_config_file(out)["metadata"]
    assert metadata["name"] == "tiny"
    assert metadata["grown_from"] == {"model": str(folder), "encoder_layers": 2, "decoder_layers": 2}
    features, lengths, tokens = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(
            grown(features, lengths, tokens).logits, model(features, lengths, tokens).logits
        )

    result = runner.invoke(
        app, ["train", "grow", str(folder), "--encoder-layers", "1", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "the model has 2" in result.output
    result = runner.invoke(app, ["train", "grow", str(folder), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--decoder-layers" in result.output
    assert not (tmp_path / "x").exists()
