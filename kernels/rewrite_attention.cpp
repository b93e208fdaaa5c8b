// fewstep attention: the TorchScript pass that puts fewstep::attention where
// a model computes softmax(scale · q kᵀ) v (Vaswani et al. 2017, eq. 1),
// either through aten::scaled_dot_product_attention or written out.
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

#include "kernels/attention.h"
#include "kernels/graph_match.h"

namespace fewstep {
namespace {

using torch::jit::Block;
using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;
namespace aten = c10::aten;
using match::constant_number;
using match::input_named;
using match::is_constant;
using match::is_none;
using match::is_number;
using match::known_rank;
using match::only_use_is;

/// Whether dims {a, b} (in any order) are the last two of a tensor of
/// `rank` (when known; bmm operands have rank 3).
bool are_last_two(int64_t a, int64_t b, std::optional<int64_t> rank) {
  if (a > b) std::swap(a, b);
  if (a == -2 && b == -1) return true;
  return rank && a == *rank - 2 && b == *rank - 1;
}

/// `v` as a float Value: a constant tensor becomes its number, an int is
/// converted with aten::Float.
Value* as_float(Graph& graph, Value* v) {
  if (v->type()->kind() == c10::TypeKind::FloatType) return v;
  if (v->type()->cast<c10::TensorType>()) return graph.insertConstant(*constant_number(v));
  return graph.insert(aten::Float, {v});
}

/// Inserts fewstep::attention(q, k, v, scale) before `replaced` and moves all
/// uses of replaced's output to it.
void insert_attention(Graph& graph, Node* replaced, Value* q, Value* k, Value* v, Value* scale) {
  torch::jit::WithInsertPoint guard(replaced);
  Value* out = graph.insert(c10::Symbol::fromQualString("fewstep::attention"), {q, k, v, scale});
  out->setType(replaced->output()->type());
  replaced->output()->replaceAllUsesWith(out);
}

/// Whether `node` is aten::scaled_dot_product_attention without mask,
/// dropout, causality or GQA; `scale` receives its scale argument (nullptr
/// for the default 1/√d).
bool is_plain_sdpa(Node* node, Value** scale) {
  if (node->kind() != aten::scaled_dot_product_attention) return false;
  Value* mask = input_named(node, "attn_mask");
  Value* dropout = input_named(node, "dropout_p");
  Value* causal = input_named(node, "is_causal");
  Value* scale_arg = input_named(node, "scale");
  Value* gqa = input_named(node, "enable_gqa");
  if (mask == nullptr || !is_none(mask)) return false;
  if (dropout == nullptr || !is_constant(dropout, 0.0)) return false;
  if (causal == nullptr || !is_constant(causal, 0.0)) return false;
  if (gqa != nullptr && !is_constant(gqa, 0.0)) return false;
  *scale = scale_arg == nullptr || is_none(scale_arg) ? nullptr : scale_arg;
  return true;
}

/// aten::scaled_dot_product_attention without mask, dropout, causality or GQA.
bool try_rewrite_sdpa(Graph& graph, Node* node) {
  Value* scale = nullptr;
  if (!is_plain_sdpa(node, &scale)) return false;
  Value* q = node->input(0);
  torch::jit::WithInsertPoint guard(node);
  Value* scale_value = nullptr;
  if (scale == nullptr) {
    // SDPA's default scale, 1/√d with d = q.size(-1).
    Value* dim = graph.insert(aten::size, {q, int64_t{-1}});
    scale_value = graph.insert(aten::div, {1.0, graph.insert(aten::sqrt, {dim})});
  } else {
    scale_value = as_float(graph, scale);
  }
  insert_attention(graph, node, q, node->input(1), node->input(2), scale_value);
  node->destroy();
  return true;
}

/// softmax((q @ kᵀ) · s, dim=-1) @ v, ending at `pv` (matmul or bmm).
bool try_rewrite_explicit(Graph& graph, Node* pv) {
  if (pv->kind() != aten::matmul && pv->kind() != aten::bmm) return false;
  Value* probs = pv->input(0);
  Node* softmax = probs->node();
  if (softmax->kind() != aten::softmax || !only_use_is(probs, pv)) return false;
  Value* softmax_dtype = input_named(softmax, "dtype");
  if (softmax_dtype != nullptr && !is_none(softmax_dtype)) return false;
  const std::optional<double> softmax_dim = constant_number(softmax->input(1));
  if (!softmax_dim) return false;

  // Optional scaling of the scores by a number.
  Value* scores = softmax->input(0);
  if (!only_use_is(scores, softmax)) return false;
  Node* scale_node = nullptr;
  if ((scores->node()->kind() == aten::mul || scores->node()->kind() == aten::div) &&
      is_number(scores->node()->input(1))) {
    scale_node = scores->node();
    scores = scale_node->input(0);
    if (!only_use_is(scores, scale_node)) return false;
  }

  // The product q @ kᵀ: matmul, bmm, or baddbmm(_, q, kᵀ, beta=0, alpha=s).
  Node* qk = scores->node();
  Value* baddbmm_alpha = nullptr;
  if (qk->kind() == aten::baddbmm) {
    Value* beta = input_named(qk, "beta");
    baddbmm_alpha = input_named(qk, "alpha");
    if (beta == nullptr || baddbmm_alpha == nullptr || !is_constant(beta, 0.0)) return false;
  } else if (qk->kind() != aten::matmul && qk->kind() != aten::bmm) {
    return false;
  }
  const bool three_d = qk->kind() != aten::matmul || pv->kind() == aten::bmm;
  Value* q = qk->kind() == aten::baddbmm ? qk->input(1) : qk->input(0);
  Value* k_t = qk->kind() == aten::baddbmm ? qk->input(2) : qk->input(1);
  Node* transpose = k_t->node();
  if (transpose->kind() != aten::transpose) return false;
  Value* k = transpose->input(0);
  const std::optional<int64_t> rank = three_d ? std::optional<int64_t>(3) : known_rank(q);
  if (rank && *rank != 3 && *rank != 4) return false;
  const std::optional<double> dim0 = constant_number(transpose->input(1));
  const std::optional<double> dim1 = constant_number(transpose->input(2));
  if (!dim0 || !dim1 || !are_last_two(static_cast<int64_t>(*dim0), static_cast<int64_t>(*dim1), rank)) return false;
  const auto sm_dim = static_cast<int64_t>(*softmax_dim);
  if (sm_dim != -1 && !(rank && sm_dim == *rank - 1)) return false;

  torch::jit::WithInsertPoint guard(pv);
  Value* scale = graph.insertConstant(1.0);
  if (baddbmm_alpha != nullptr) scale = as_float(graph, baddbmm_alpha);
  if (scale_node != nullptr) {
    Value* s = as_float(graph, scale_node->input(1));
    if (scale_node->kind() == aten::div) s = graph.insert(aten::div, {1.0, s});
    scale = baddbmm_alpha != nullptr ? graph.insert(aten::mul, {scale, s}) : s;
  }
  insert_attention(graph, pv, q, k, pv->input(1), scale);
  pv->destroy();
  softmax->destroy();
  if (scale_node != nullptr) scale_node->destroy();
  qk->destroy();
  return true;
}

/// Whether `v` is dim `dim` of the size of `t`, a tensor of rank `rank`:
/// aten::size(t, dim), output `dim` of prim::ListUnpack(aten::size(t)) with
/// `rank` outputs, or aten::__getitem__(aten::size(t), dim) (dim may also
/// be written dim − rank).
bool is_size_of(const Value* v, const Value* t, int64_t dim, int64_t rank) {
  const Node* n = v->node();
  auto is_dim = [&](const Value* d) {
    const std::optional<double> c = constant_number(d);
    return c && (*c == static_cast<double>(dim) || *c == static_cast<double>(dim - rank));
  };
  auto whole_size = [&](const Value* s) {
    return s->node()->kind() == aten::size && s->node()->inputs().size() == 1 && s->node()->input(0) == t;
  };
  if (n->kind() == aten::size && n->inputs().size() == 2) return n->input(0) == t && is_dim(n->input(1));
  if (n->kind() == c10::prim::ListUnpack) {
    return whole_size(n->input(0)) && static_cast<int64_t>(n->outputs().size()) == rank &&
           static_cast<int64_t>(v->offset()) == dim;
  }
  if (n->kind() == aten::__getitem__) return whole_size(n->input(0)) && is_dim(n->input(1));
  return false;
}

/// Whether two int values are the same: one value, equal constants, or
/// reads of one module attribute of one object (the pass assumes, as
/// TorchScript models do, that forward sets no attribute).
bool same_value(const Value* a, const Value* b) {
  if (a == b) return true;
  const std::optional<double> ca = constant_number(a);
  const std::optional<double> cb = constant_number(b);
  if (ca && cb) return *ca == *cb;
  const Node* x = a->node();
  const Node* y = b->node();
  return x->kind() == c10::prim::GetAttr && y->kind() == c10::prim::GetAttr && x->input(0) == y->input(0) &&
         x->s(c10::attr::name) == y->s(c10::attr::name);
}

/// Whether `node` is aten::transpose(_, 1, 2) (either order).
bool transposes_1_2(const Node* node) {
  if (node->kind() != aten::transpose || node->inputs().size() != 3) return false;
  const std::optional<double> a = constant_number(node->input(1));
  const std::optional<double> b = constant_number(node->input(2));
  return a && b && std::min(*a, *b) == 1.0 && std::max(*a, *b) == 2.0;
}

/// One head split `transpose(reshape(x, [batch, seq, heads, dim]), 1, 2)`.
struct HeadSplit {
  Value* x = nullptr;
  Value* batch = nullptr;
  Value* seq = nullptr;
  Value* heads = nullptr;
  Value* dim = nullptr;
};

std::optional<HeadSplit> match_split(Value* t) {
  Node* transpose = t->node();
  if (!transposes_1_2(transpose)) return std::nullopt;
  Value* r = transpose->input(0);
  Node* reshape = r->node();
  if ((reshape->kind() != aten::reshape && reshape->kind() != aten::view) || !only_use_is(r, transpose)) {
    return std::nullopt;
  }
  Node* list = reshape->input(1)->node();
  if (list->kind() != c10::prim::ListConstruct || list->inputs().size() != 4) return std::nullopt;
  return HeadSplit{reshape->input(0), list->input(0), list->input(1), list->input(2), list->input(3)};
}

/// Whether `v`'s uses are exactly the nodes in `users` (each once).
bool used_only_by(const Value* v, std::initializer_list<const Node*> users) {
  if (v->uses().size() != users.size()) return false;
  return std::all_of(users.begin(), users.end(), [&](const Node* u) {
    return std::count_if(v->uses().begin(), v->uses().end(),
                         [&](const torch::jit::Use& use) { return use.user == u; }) == 1;
  });
}

/// aten::pad(t, [0, p], "constant", None or 0) or aten::constant_pad_nd(t, [0, p], 0): its `p`, else nullptr.
Value* right_pad_amount(Node* node, const Value* t) {
  const bool pad = node->kind() == aten::pad && node->inputs().size() == 4;
  const bool constant_pad = node->kind() == aten::constant_pad_nd && node->inputs().size() == 3;
  if (!(pad || constant_pad) || node->input(0) != t) return nullptr;
  if (pad) {
    const std::optional<c10::IValue> mode = torch::jit::toIValue(node->input(2));
    if (!mode || !mode->isString() || mode->toStringRef() != "constant") return nullptr;
    if (!is_none(node->input(3)) && !is_constant(node->input(3), 0.0)) return nullptr;
  } else if (!is_constant(node->input(2), 0.0)) {
    return nullptr;
  }
  Node* list = node->input(1)->node();
  if (list->kind() != c10::prim::ListConstruct || list->inputs().size() != 2 || !is_constant(list->input(0), 0.0)) {
    return nullptr;
  }
  return list->input(1);
}

/// Whether two conditions are the same value or the same comparison of the same values.
bool same_condition(const Value* a, const Value* b) {
  if (a == b) return true;
  const Node* x = a->node();
  const Node* y = b->node();
  if (x->kind() != y->kind() || x->inputs().size() != y->inputs().size() || x->outputs().size() != 1 ||
      (x->kind() != aten::gt && x->kind() != aten::ne && x->kind() != aten::lt && x->kind() != aten::ge)) {
    return false;
  }
  for (size_t i = 0; i < x->inputs().size(); ++i) {
    const std::optional<double> cx = constant_number(x->input(i));
    const std::optional<double> cy = constant_number(y->input(i));
    if (x->input(i) != y->input(i) && !(cx && cy && *cx == *cy)) return false;
  }
  return true;
}

/// The head-dim padding of tools/emoji/model.py around an SDPA, seen from
/// the prim::If whose three outputs are its q, k, v: the then-branch returns
/// (pad(tq, [0, P]) · √((D + P)/D), pad(tk, [0, P]), pad(tv, [0, P])), the
/// else-branch (tq, tk, tv). Returns (tq, tk, tv) or nothing.
std::optional<std::array<Value*, 3>> match_padding(Node* if_node, Value* head_dim) {
  if (if_node->kind() != c10::prim::If || if_node->outputs().size() != 3 || if_node->blocks().size() != 2) {
    return std::nullopt;
  }
  Block* then_block = if_node->blocks()[0];
  Block* else_block = if_node->blocks()[1];
  if (else_block->nodes().begin() != else_block->nodes().end() || else_block->outputs().size() != 3) {
    return std::nullopt;
  }
  std::array<Value*, 3> t = {else_block->outputs()[0], else_block->outputs()[1], else_block->outputs()[2]};
  Node* mul = then_block->outputs()[0]->node();
  if (mul->kind() != aten::mul || mul->inputs().size() != 2) return std::nullopt;
  Value* p = right_pad_amount(mul->input(0)->node(), t[0]);
  if (p == nullptr || right_pad_amount(then_block->outputs()[1]->node(), t[1]) != p ||
      right_pad_amount(then_block->outputs()[2]->node(), t[2]) != p) {
    return std::nullopt;
  }
  // The factor √((D + P) / D), which turns SDPA's 1/√(D + P) into 1/√D.
  Node* sqrt = mul->input(1)->node();
  if (sqrt->kind() != aten::sqrt) return std::nullopt;
  Node* div = sqrt->input(0)->node();
  if (div->kind() != aten::div || div->inputs().size() != 2 || !same_value(div->input(1), head_dim)) {
    return std::nullopt;
  }
  Node* add = div->input(0)->node();
  if (add->kind() != aten::add || add->inputs().size() != 2 || !same_value(add->input(0), head_dim) ||
      add->input(1) != p) {
    return std::nullopt;
  }
  return t;
}

/// The multi-head form around an SDPA (see rewrite_attention in
/// attention.h), visited at the merge `reshape(transpose(o, 1, 2), [B, Sq, C])`;
/// replaced by fewstep::attention_heads(q, k, v, H). The rest becomes dead code.
bool try_fold_heads(Graph& graph, Node* merge) {
  if ((merge->kind() != aten::reshape && merge->kind() != aten::view) || merge->inputs().size() != 2) return false;
  Value* merged = merge->input(0);
  Node* transpose = merged->node();
  if (!transposes_1_2(transpose) || !only_use_is(merged, merge)) return false;
  Value* o = transpose->input(0);
  if (!only_use_is(o, transpose)) return false;
  Block* block = merge->owningBlock();

  // The output, optionally sliced back from the padded head dim.
  Node* sdpa = o->node();
  Node* slice_if = nullptr;
  Value* slice_end = nullptr;
  if (sdpa->kind() == c10::prim::If) {
    slice_if = sdpa;
    if (slice_if->outputs().size() != 1 || slice_if->blocks().size() != 2) return false;
    Block* then_block = slice_if->blocks()[0];
    Block* else_block = slice_if->blocks()[1];
    Node* slice = then_block->outputs()[0]->node();
    if (slice->kind() != aten::slice || slice->inputs().size() != 5 || slice->owningBlock() != then_block) return false;
    if (std::next(then_block->nodes().begin()) != then_block->nodes().end()) return false;  // the slice alone
    if (else_block->nodes().begin() != else_block->nodes().end()) return false;
    Value* a = slice->input(0);
    if (else_block->outputs()[0] != a || !used_only_by(a, {slice, else_block->return_node()})) return false;
    if (!is_constant(slice->input(1), -1.0) && !is_constant(slice->input(1), 3.0)) return false;
    if (!(is_none(slice->input(2)) || is_constant(slice->input(2), 0.0)) || !is_constant(slice->input(4), 1.0)) {
      return false;
    }
    slice_end = slice->input(3);
    sdpa = a->node();
  }
  Value* scale = nullptr;
  // An explicit scale only without the padding (whose factor assumes SDPA's default).
  if (sdpa->owningBlock() != block || !is_plain_sdpa(sdpa, &scale) || (scale != nullptr && slice_if != nullptr)) {
    return false;
  }

  // The inputs, optionally padded under the same condition as the slice.
  std::array<Value*, 3> t = {sdpa->input(0), sdpa->input(1), sdpa->input(2)};
  Node* pad_if = t[0]->node();
  if (slice_if != nullptr) {
    if (pad_if->kind() != c10::prim::If || pad_if->owningBlock() != block ||
        !same_condition(pad_if->input(0), slice_if->input(0))) {
      return false;
    }
    for (int i = 0; i < 3; ++i) {
      if (t[i] != pad_if->output(i) || !only_use_is(t[i], sdpa)) return false;
    }
  } else {
    for (int i = 0; i < 3; ++i) {
      if (!only_use_is(t[i], sdpa)) return false;
    }
  }
  std::array<HeadSplit, 3> split;
  if (slice_if != nullptr) {
    // The head dim comes from q's split, reached through the else-branch.
    const std::optional<HeadSplit> q_split = match_split(pad_if->blocks()[1]->outputs()[0]);
    if (!q_split || !same_value(slice_end, q_split->dim)) return false;
    const std::optional<std::array<Value*, 3>> inner = match_padding(pad_if, q_split->dim);
    if (!inner) return false;
    t = *inner;
    Node* else_ret = pad_if->blocks()[1]->return_node();
    Node* q_pad = pad_if->blocks()[0]->outputs()[0]->node()->input(0)->node();
    if (!used_only_by(t[0], {q_pad, else_ret}) ||
        !used_only_by(t[1], {pad_if->blocks()[0]->outputs()[1]->node(), else_ret}) ||
        !used_only_by(t[2], {pad_if->blocks()[0]->outputs()[2]->node(), else_ret})) {
      return false;
    }
  }
  for (int i = 0; i < 3; ++i) {
    const std::optional<HeadSplit> s = match_split(t[i]);
    if (!s || t[i]->node()->owningBlock() != block) return false;
    split[i] = *s;
  }
  // One H and one D for all three; D = C // H with C = q's channels; each
  // split's seq is its own (or, for k and v, the other's), its batch its own or q's.
  Value* q = split[0].x;
  Value* heads = split[0].heads;
  Value* head_dim = split[0].dim;
  Node* floordiv = head_dim->node();
  if (floordiv->kind() != aten::floordiv || floordiv->inputs().size() != 2 || !same_value(floordiv->input(1), heads) ||
      !is_size_of(floordiv->input(0), q, 2, 3)) {
    return false;
  }
  for (int i = 0; i < 3; ++i) {
    const HeadSplit& s = split[i];
    // k and v share seq_k (models often reshape v with k's length).
    const bool own_seq = is_size_of(s.seq, s.x, 1, 3) ||
                         (i > 0 && (is_size_of(s.seq, split[1].x, 1, 3) || is_size_of(s.seq, split[2].x, 1, 3)));
    if (!same_value(s.heads, heads) || !same_value(s.dim, head_dim) || !own_seq) return false;
    if (!is_size_of(s.batch, s.x, 0, 3) && !is_size_of(s.batch, q, 0, 3)) return false;
  }
  // The merge's target: q's own [B, Sq, C].
  Node* list = merge->input(1)->node();
  if (list->kind() != c10::prim::ListConstruct || list->inputs().size() != 3) return false;
  for (int64_t d = 0; d < 3; ++d) {
    if (!is_size_of(list->input(d), q, d, 3)) return false;
  }

  torch::jit::WithInsertPoint guard(merge);
  Value* scale_arg = scale != nullptr ? as_float(graph, scale) : graph.insertConstant(c10::IValue());
  Value* out = graph.insert(c10::Symbol::fromQualString("fewstep::attention_heads"),
                            {q, split[1].x, split[2].x, heads, scale_arg});
  out->setType(merge->output()->type());
  merge->output()->replaceAllUsesWith(out);
  merge->destroy();
  return true;
}

bool sets_attributes(Block* block) {
  for (Node* node : block->nodes()) {
    if (node->kind() == c10::prim::SetAttr) return true;
    for (Block* sub : node->blocks()) {
      if (sets_attributes(sub)) return true;
    }
  }
  return false;
}

int fold_heads_block(Graph& graph, Block* block) {
  int count = 0;
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    Node* node = *it;
    ++it;  // try_fold_heads destroys only `node`
    for (Block* sub : node->blocks()) count += fold_heads_block(graph, sub);
    if (try_fold_heads(graph, node)) ++count;
  }
  return count;
}

int rewrite_block(Graph& graph, Block* block) {
  int count = 0;
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    Node* node = *it;
    ++it;  // the rewrites destroy `node` and nodes before it, never later ones
    for (Block* sub : node->blocks()) count += rewrite_block(graph, sub);
    if (try_rewrite_sdpa(graph, node) || try_rewrite_explicit(graph, node)) ++count;
  }
  return count;
}

}  // namespace

int rewrite_attention(const std::shared_ptr<torch::jit::Graph>& graph) {
  // The multi-head forms first (their SDPA then becomes dead code), then
  // every attention left.
  const int folded = sets_attributes(graph->block()) ? 0 : fold_heads_block(*graph, graph->block());
  if (folded > 0) torch::jit::EliminateDeadCode(graph);
  const int count = rewrite_block(*graph, graph->block());
  if (count > 0) torch::jit::EliminateDeadCode(graph);
  return folded + count;
}

int rewrite_attention(torch::jit::Module& module) {
  // Every function of the module's compilation unit: the methods of all its
  // submodule types and the free functions they call (attention often sits
  // in a helper function reached through prim::CallFunction). Graphs are
  // shared by every instance of a type, so each is rewritten once.
  // A loaded file has one compilation unit; modules built in C++ may each have their own.
  std::vector<const torch::jit::CompilationUnit*> units;
  int count = 0;
  for (const torch::jit::Module& m : module.modules()) {
    const auto cu = m._ivalue()->compilation_unit();
    if (std::find(units.begin(), units.end(), cu.get()) != units.end()) continue;
    units.push_back(cu.get());
    for (torch::jit::Function* fn : cu->get_functions()) {
      if (auto* graph_fn = dynamic_cast<torch::jit::GraphFunction*>(fn)) count += rewrite_attention(graph_fn->graph());
    }
  }
  return count;
}

}  // namespace fewstep
