"""RELIANT's sizes, stated once (plain data, no torch).

The students are transductive (CPF's PLP has one gate per node), so a size is a framework on a graph:
``SIZES["<framework>.<graph>"]`` holds the student network's arguments for :class:`~zoo.models.reliant.module.
ReliantModule`: ``framework`` (``cpf``: PLP + MLP, ``graphakd``: SGC), the graph's ``in_features`` (the sensitive
column included), ``num_nodes`` and ``num_classes``, and the framework's student architecture from the official code
(yushundong/RELIANT@f402922): CPF ``src/CPF-master/pre.conf.yaml`` ("ind": 10 layers, emb 64, MLP 2 layers, feature /
attention dropout 0.8 / 0.2); GraphAKD ``src/GraphAKD-main/node-level/stu-gnn/main.py`` (SGC, 64 hidden, K = 1,
dropout 0.5).

``TEACHER_SIZES["<arch>.<graph>"]`` holds :class:`~zoo.models.reliant.module.GNNTeacherModule`'s network arguments:
CPF's ``train.conf.yaml`` teachers (GCN: 3 layers of 64, dropout 0.8; GraphSAGE: 4 layers of 128, dropout 0.5).

The graph sizes are those of the NIFTY files RELIANT reads (bail 18 features x 18,876 nodes, credit 13 x 30,000, german
27 x 1,000; two classes each).
"""

GRAPHS = {
    "bail": {"in_features": 18, "num_nodes": 18876, "num_classes": 2},
    "credit": {"in_features": 13, "num_nodes": 30000, "num_classes": 2},
    "german": {"in_features": 27, "num_nodes": 1000, "num_classes": 2},
}
STUDENTS = {
    "cpf": {"num_layers": 10, "emb_dim": 64, "mlp_layers": 2, "feat_drop": 0.8, "attn_drop": 0.2},
    "graphakd": {"hidden": 64, "sgc_k": 1, "dropout": 0.5},
}
TEACHERS = {
    "gcn": {"hidden": 64, "num_layers": 3, "dropout": 0.8},
    "sage": {"hidden": 128, "num_layers": 4, "dropout": 0.5},
}

SIZES = {
    f"{fw}.{g}": {"framework": fw, **graph, **student}
    for g, graph in GRAPHS.items()
    for fw, student in STUDENTS.items()
}
DEFAULT = "cpf.bail"

TEACHER_SIZES = {
    f"{arch}.{g}": {"arch": arch, "in_features": graph["in_features"], "num_classes": graph["num_classes"], **teacher}
    for g, graph in GRAPHS.items()
    for arch, teacher in TEACHERS.items()
}
TEACHER_DEFAULT = "gcn.bail"
