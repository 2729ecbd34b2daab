"""protocol: configs from the papers' protocols, --method_options, the data-free checks; nets:
networks keyed by what they depend on; acquisition: what each method declares."""
import pytest

from vl4pose_jax import acquisition, nets, protocol
from vl4pose_jax.protocol import SimulationError


def test_make_config_fills_unset_fields_from_the_protocol():
    c = protocol.make_config("synthetic_human", ["vl4pose", "random"], seed=3, budget=50,
                             epochs=None)
    assert c.methods == ("vl4pose", "random") and c.seed == 3 and c.budget == 50
    assert c.epochs == 60 and c.cycle_epochs == 12 and c.lr == 3e-3 and c.preset == "small"
    cke = protocol.make_config("icvl", ["cke"], protocol="cke")
    assert (cke.init_size, cke.budget, cke.rounds, cke.pre_subset) == (1000, 1000, 9, 0.1)
    assert protocol.make_config("icvl", ["cke"], pre_subset=2000).pre_subset == 2000
    with pytest.raises(SimulationError, match="unknown protocol 'nope'"):
        protocol.make_config("lsp", ["random"], protocol="nope")
    with pytest.raises(SimulationError, match="unknown dataset 'nope'"):
        protocol.make_config("nope", ["random"])
    with pytest.raises(SimulationError, match="--cycle_epochs=3 has no effect"):
        protocol.make_config("icvl", ["random"], cycle_epochs=3)


def test_a_dataset_without_a_protocol_takes_its_kinds(monkeypatch):
    monkeypatch.delitem(protocol.PROTOCOLS, "mpii")
    assert protocol.protocol_of("mpii") == protocol.PROTOCOLS["lsp"]
    monkeypatch.delitem(protocol.PROTOCOLS, "nyu")
    assert protocol.protocol_of("nyu") == protocol.PROTOCOLS["icvl"]


def test_method_options_parse_and_are_checked_against_select():
    parsed = protocol.parse_method_options(
        ["vl4pose:num_peaks=5,mode=expected,exclude_border=false", "egl:k=3"],
        ("vl4pose", "egl"))
    assert parsed == {"vl4pose": {"num_peaks": 5, "mode": "expected", "exclude_border": False},
                      "egl": {"k": 3}}
    for bad, match in [("vl4pose", "METHOD:KEY=VALUE"), ("vl4pose:num_peaks", "not KEY=VALUE"),
                       ("random:x=1", "not in --method")]:
        with pytest.raises(SimulationError, match=match):
            protocol.parse_method_options([bad], ("vl4pose",))
    config = protocol.Config(methods=("vl4pose",), method_options={"vl4pose": {"num_peak": 5}})
    with pytest.raises(SimulationError, match="'vl4pose' has no option 'num_peak'.*num_peaks"):
        protocol.check(config)
    protocol.check(protocol.Config(methods=("vl4pose",),
                                   method_options={"vl4pose": {"num_peaks": 5}}))


def test_methods_declare_their_needs():
    declared = {m: acquisition.get(m) for m in acquisition.names()}
    assert sorted(m for m, d in declared.items() if d.scores_records) == sorted(
        ["vl4pose", "aleatoric", "learning_loss", "multipeak_entropy", "mc_dropout"])
    assert {m: d.deepprior for m, d in declared.items() if d.deepprior != "plain"} == {
        "aleatoric": "aleatoric", "mc_dropout": "bayesian", "cke": "bayesian"}
    assert [m for m, d in declared.items() if d.rank_new is not None] == ["vl4pose"]


def test_networks_are_keyed_by_skeleton_not_dataset_name():
    human = protocol.Config(dataset="synthetic_human", preset="micro", lr=1e-3)
    lsp = protocol.Config(dataset="lsp", preset="micro", lr=1e-3)
    assert nets.nets_for(human, "vl4pose") is nets.nets_for(lsp, "vl4pose")
    assert nets.nets_for(human, "vl4pose") is not nets.nets_for(human, "random")
    hand = protocol.Config(dataset="synthetic_hand", preset="micro")
    assert nets.nets_for(hand, "cke").model.dropout == "A"
    assert nets.nets_for(hand, "aleatoric").model.aleatoric
    assert nets.nets_for(hand, "random").model.dropout is None
