// fewstep attention: the TorchScript pass that puts fewstep::attention where
// a model computes softmax(scale · q kᵀ) v (Vaswani et al. 2017, eq. 1),
// either through aten::scaled_dot_product_attention or written out.
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <algorithm>
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

/// aten::scaled_dot_product_attention without mask, dropout, causality or GQA.
bool try_rewrite_sdpa(Graph& graph, Node* node) {
  if (node->kind() != aten::scaled_dot_product_attention) return false;
  Value* mask = input_named(node, "attn_mask");
  Value* dropout = input_named(node, "dropout_p");
  Value* causal = input_named(node, "is_causal");
  Value* scale = input_named(node, "scale");
  Value* gqa = input_named(node, "enable_gqa");
  if (mask == nullptr || !is_none(mask)) return false;
  if (dropout == nullptr || !is_constant(dropout, 0.0)) return false;
  if (causal == nullptr || !is_constant(causal, 0.0)) return false;
  if (gqa != nullptr && !is_constant(gqa, 0.0)) return false;
  Value* q = node->input(0);
  torch::jit::WithInsertPoint guard(node);
  Value* scale_value = nullptr;
  if (scale == nullptr || is_none(scale)) {
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
  const int count = rewrite_block(*graph, graph->block());
  if (count > 0) torch::jit::EliminateDeadCode(graph);
  return count;
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
