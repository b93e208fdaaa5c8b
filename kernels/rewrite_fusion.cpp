// fewstep fused ops: the TorchScript pass that puts fewstep::group_norm(_silu),
// fewstep::gelu_ and fewstep::geglu where a model computes them with
// separate LibTorch ops (see rewrite_fusion in kernels/fused.h).
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <vector>

#include "kernels/fused.h"
#include "kernels/graph_match.h"

namespace fewstep {
namespace {

using torch::jit::Block;
using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;
namespace aten = c10::aten;
namespace prim = c10::prim;
using match::constant_number;
using match::input_named;
using match::is_constant;
using match::known_rank;
using match::only_use_is;

c10::Symbol fewstep_op(const char* name) { return c10::Symbol::fromQualString(std::string("fewstep::") + name); }

/// The node that contains `node` (itself, or the node owning one of its
/// enclosing blocks) directly in `block`; nullptr when `node` is not inside it.
Node* ancestor_in(Node* node, const Block* block) {
  while (node != nullptr && node->owningBlock() != block) node = node->owningBlock()->owningNode();
  return node;
}

/// Whether `v`, an input of a node in `point`'s block, is available right
/// before `point`: a parameter, a value of an enclosing block, or defined
/// before `point` in the same block.
bool available_before(const Value* v, const Node* point) {
  const Node* def = v->node();
  if (def->kind() == prim::Param || def->owningBlock() != point->owningBlock()) return true;
  return def->isBefore(point);
}

/// Whether `v` is available before `point` once its producer is moved up:
/// a constant, or a module attribute read (prim::GetAttr, pure while the
/// graph writes no attribute) whose own inputs can be made available.
bool can_hoist(const Value* v, const Node* point, bool graph_sets_attributes) {
  if (available_before(v, point)) return true;
  const Node* def = v->node();
  const bool pure = def->kind() == prim::Constant || (def->kind() == prim::GetAttr && !graph_sets_attributes);
  return pure && std::all_of(def->inputs().begin(), def->inputs().end(),
                             [&](const Value* in) { return can_hoist(in, point, graph_sets_attributes); });
}

/// Moves `v`'s producers (see can_hoist) before `point`, inputs first.
void hoist(Value* v, Node* point) {
  if (available_before(v, point)) return;
  Node* def = v->node();
  for (Value* in : def->inputs()) hoist(in, point);
  def->moveBefore(point);
}

bool sets_attributes(const Block* block) {
  for (const Node* node : block->nodes()) {
    if (node->kind() == prim::SetAttr) return true;
    for (const Block* sub : node->blocks()) {
      if (sets_attributes(sub)) return true;
    }
  }
  return false;
}

/// A use that reads only the shape, dtype or device of its input.
bool is_metadata_use(const torch::jit::Use& use) {
  static const c10::Symbol numel = c10::Symbol::fromQualString("aten::numel");
  const c10::Symbol k = use.user->kind();
  return use.offset == 0 &&
         (k == aten::size || k == aten::dim || k == numel || k == prim::dtype || k == prim::device || k == aten::len);
}

/// aten::group_norm (optionally fed by an add, optionally followed by SiLU),
/// visited at its last node: the silu, or the group_norm when no silu follows.
bool try_group_norm(Graph& graph, Node* node, FusionCounts& counts) {
  Node* gn = nullptr;
  Node* silu = nullptr;
  if (node->kind() == aten::silu && node->inputs().size() == 1 && node->input(0)->node()->kind() == aten::group_norm &&
      only_use_is(node->input(0), node)) {
    silu = node;
    gn = node->input(0)->node();
  } else if (node->kind() == aten::group_norm) {
    const auto& uses = node->output()->uses();
    if (uses.size() == 1 && uses[0].user->kind() == aten::silu) return false;  // fused when the silu is visited
    gn = node;
  } else {
    return false;
  }
  if (gn->inputs().size() < 5 || gn->owningBlock() != node->owningBlock()) return false;
  Value* x = gn->input(0);
  Value* groups = gn->input(1);
  Value* weight = gn->input(2);
  Value* bias = gn->input(3);
  Value* eps = gn->input(4);

  // The shift: x = aten::add(a, s, alpha=1) in the same block, its other
  // uses only shape queries (GroupNorm's own input checks). The fused op
  // then goes before the first of those uses and answers them itself (its
  // output has x's shape, dtype and device); the weight and bias reads
  // move up with it when they come later.
  Node* add = x->node();
  Node* insert_point = gn;
  bool with_shift = false;
  if (add->kind() == aten::add && add->inputs().size() == 3 && add->owningBlock() == gn->owningBlock() &&
      is_constant(add->input(2), 1.0) && add->input(0)->type()->cast<c10::TensorType>() &&
      add->input(1)->type()->cast<c10::TensorType>()) {
    Node* first = gn;
    bool only_metadata = true;
    for (const torch::jit::Use& use : x->uses()) {
      if (use.user == gn) continue;
      Node* at = ancestor_in(use.user, gn->owningBlock());
      if (!is_metadata_use(use) || at == nullptr) {
        only_metadata = false;
        break;
      }
      if (at->isBefore(first)) first = at;
    }
    const bool writes = sets_attributes(graph.block());
    if (only_metadata && std::all_of(gn->inputs().begin() + 1, gn->inputs().end(),
                                     [&](const Value* v) { return can_hoist(v, first, writes); })) {
      for (Value* v : gn->inputs().slice(1)) hoist(v, first);
      insert_point = first;
      with_shift = true;
    }
  }

  torch::jit::WithInsertPoint guard(insert_point);
  std::vector<torch::jit::NamedValue> args = {with_shift ? add->input(0) : x, groups, weight, bias, eps};
  if (with_shift) args.emplace_back(add->input(1));
  Value* fused = graph.insert(fewstep_op(silu != nullptr ? "group_norm_silu" : "group_norm"), args);
  Node* last = silu != nullptr ? silu : gn;
  fused->setType(last->output()->type());
  last->output()->replaceAllUsesWith(fused);
  if (silu != nullptr) silu->destroy();
  gn->destroy();
  if (with_shift) {
    x->replaceAllUsesWith(fused);  // the shape queries
    add->destroy();
  }
  ++counts.group_norm;
  if (silu != nullptr) ++counts.group_norm_silu;
  if (with_shift) ++counts.group_norm_shift;
  return true;
}

/// aten::gelu(y) with y a fresh matrix-product result used nowhere else.
bool try_gelu(Graph& graph, Node* node, FusionCounts& counts) {
  if (node->kind() != aten::gelu) return false;
  Value* y = node->input(0);
  const c10::Symbol producer = y->node()->kind();
  const bool fresh = producer == aten::linear || producer == aten::matmul || producer == aten::addmm ||
                     producer == aten::mm || producer == aten::bmm || producer == aten::baddbmm;
  if (!fresh || !only_use_is(y, node)) return false;
  Value* approximate = input_named(node, "approximate");
  torch::jit::WithInsertPoint guard(node);
  std::vector<torch::jit::NamedValue> args = {y};
  if (approximate != nullptr) args.emplace_back(approximate);
  Value* fused = graph.insert(fewstep_op("gelu_"), args);
  fused->setType(node->output()->type());
  node->output()->replaceAllUsesWith(fused);
  node->destroy();
  ++counts.gelu;
  return true;
}

/// Whether chunk's dim argument is the last dim.
bool is_last_dim(const Value* dim, const Value* input) {
  const std::optional<double> d = constant_number(dim);
  if (!d) return false;
  const std::optional<int64_t> rank = known_rank(input);
  return *d == -1 || (rank && static_cast<int64_t>(*d) == *rank - 1);
}

/// value · gelu(gate) with [value, gate] = chunk(y, 2, -1) (aten::chunk +
/// prim::ListUnpack, or prim::ConstantChunk), visited at the mul.
bool try_geglu(Graph& graph, Node* mul, FusionCounts& counts) {
  if (mul->kind() != aten::mul || mul->inputs().size() != 2) return false;
  Node* gelu = nullptr;
  Value* value = nullptr;
  for (int i = 0; i < 2; ++i) {
    if (mul->input(i)->node()->kind() == aten::gelu) {
      gelu = mul->input(i)->node();
      value = mul->input(1 - i);
    }
  }
  if (gelu == nullptr || !only_use_is(gelu->output(), mul) || !only_use_is(value, mul)) return false;
  Value* gate = gelu->input(0);
  Node* split = value->node();
  if (gate->node() != split || split->outputs().size() != 2 || split->output(0) != value || split->output(1) != gate ||
      !only_use_is(gate, gelu)) {
    return false;
  }
  Value* y = nullptr;
  Node* chunk = nullptr;
  if (split->kind() == prim::ListUnpack) {
    chunk = split->input(0)->node();
    if (chunk->kind() != aten::chunk || !only_use_is(split->input(0), split) || !is_constant(chunk->input(1), 2.0) ||
        !is_last_dim(chunk->input(2), chunk->input(0))) {
      return false;
    }
    y = chunk->input(0);
  } else if (split->kind() == prim::ConstantChunk) {
    const int64_t dim = split->i(c10::attr::dim);
    const std::optional<int64_t> rank = known_rank(split->input(0));
    if (split->i(c10::attr::chunks) != 2 || !(dim == -1 || (rank && dim == *rank - 1))) return false;
    y = split->input(0);
  } else {
    return false;
  }
  Value* approximate = input_named(gelu, "approximate");
  torch::jit::WithInsertPoint guard(mul);
  std::vector<torch::jit::NamedValue> args = {y};
  if (approximate != nullptr) args.emplace_back(approximate);
  Value* fused = graph.insert(fewstep_op("geglu"), args);
  fused->setType(mul->output()->type());
  mul->output()->replaceAllUsesWith(fused);
  mul->destroy();
  gelu->destroy();
  split->destroy();
  if (chunk != nullptr) chunk->destroy();
  ++counts.geglu;
  return true;
}

/// aten::conv2d with list padding → fewstep::conv2d (same arguments; it
/// caches reordered weights, kernels/conv_cpu.cpp).
bool try_conv(Graph& graph, Node* node, FusionCounts& counts) {
  if (node->kind() != aten::conv2d || node->inputs().size() != 7 || !node->input(4)->type()->cast<c10::ListType>()) {
    return false;
  }
  torch::jit::WithInsertPoint guard(node);
  std::vector<torch::jit::NamedValue> args(node->inputs().begin(), node->inputs().end());
  Value* fused = graph.insert(fewstep_op("conv2d"), args);
  fused->setType(node->output()->type());
  node->output()->replaceAllUsesWith(fused);
  node->destroy();
  ++counts.conv2d;
  return true;
}

void rewrite_block(Graph& graph, Block* block, FusionCounts& counts) {
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    Node* node = *it;
    ++it;  // the rewrites destroy `node` and nodes before it, never later ones
    for (Block* sub : node->blocks()) rewrite_block(graph, sub, counts);
    (void)(try_group_norm(graph, node, counts) || try_gelu(graph, node, counts) || try_geglu(graph, node, counts) ||
           try_conv(graph, node, counts));
  }
}

void add(FusionCounts& total, const FusionCounts& c) {
  total.group_norm += c.group_norm;
  total.group_norm_silu += c.group_norm_silu;
  total.group_norm_shift += c.group_norm_shift;
  total.gelu += c.gelu;
  total.geglu += c.geglu;
  total.conv2d += c.conv2d;
}

/// The TorchScript function a prim::CallFunction / prim::CallMethod node calls, or nullptr.
torch::jit::GraphFunction* callee_of(const Node* node) {
  torch::jit::Function* fn = nullptr;
  if (node->kind() == prim::CallFunction) {
    if (auto type = node->input(0)->type()->cast<c10::FunctionType>()) fn = type->function();
  } else if (node->kind() == prim::CallMethod) {
    if (auto type = node->input(0)->type()->cast<c10::ClassType>()) fn = type->findMethod(node->s(c10::attr::name));
  }
  return fn != nullptr ? torch::jit::tryToGraphFunction(*fn) : nullptr;
}

/// Inlines every call, recursively, using the callees' graphs as they were
/// when the pass started (`original`), never a graph the pass has already
/// rewritten nor LibTorch's cached optimised copies. `flat` memoises each
/// callee's fully inlined graph.
class Inliner {
 public:
  void inline_calls(Block* block) {
    for (auto it = block->nodes().begin(); it != block->nodes().end();) {
      Node* node = *it;
      ++it;  // the inlined body goes before `it`, already flat
      if (torch::jit::GraphFunction* callee = callee_of(node)) {
        if (node->kind() == prim::CallFunction) node->removeInput(0);  // the function value; the callee takes the rest
        torch::jit::inlineCallTo(node, callee, flat(callee).get());
      } else {
        for (Block* sub : node->blocks()) inline_calls(sub);
      }
    }
  }

  /// Records `fn`'s graph as it is now (call before changing any graph).
  void snapshot(torch::jit::GraphFunction* fn) { original_.emplace(fn, fn->graph()->copy()); }

 private:
  std::shared_ptr<Graph> flat(torch::jit::GraphFunction* fn) {
    if (auto found = flat_.find(fn); found != flat_.end()) return found->second;
    auto source = original_.find(fn);
    std::shared_ptr<Graph> g = (source != original_.end() ? source->second : fn->graph())->copy();
    inline_calls(g->block());
    flat_.emplace(fn, g);
    return g;
  }

  std::unordered_map<const torch::jit::Function*, std::shared_ptr<Graph>> original_, flat_;
};

/// Rewrites an inlined graph. Constant propagation first resolves the
/// branches on constant flags that inlining exposes (F.silu's
/// `if inplace:` with inplace=False), so that the op after a GroupNorm is
/// its SiLU rather than a prim::If.
FusionCounts rewrite_inlined(std::shared_ptr<Graph> graph) {
  torch::jit::ConstantPropagation(graph);
  FusionCounts counts;
  rewrite_block(*graph, graph->block(), counts);
  if (counts.total() > 0) torch::jit::EliminateDeadCode(graph);
  return counts;
}

}  // namespace

FusionCounts rewrite_fusion(const std::shared_ptr<torch::jit::Graph>& graph) {
  Inliner inliner;
  inliner.inline_calls(graph->block());
  return rewrite_inlined(graph);
}

FusionCounts rewrite_fusion(torch::jit::Module& module, bool root_methods) {
  // Every function of each compilation unit (as rewrite_attention), once.
  // All graphs are recorded first, so that a method inlined into its
  // callers brings its original body (whose patterns may continue in the
  // caller, e.g. nn.GroupNorm's forward followed by the caller's SiLU),
  // not the body this pass has already rewritten.
  std::vector<const torch::jit::CompilationUnit*> units;
  std::vector<torch::jit::GraphFunction*> functions;
  for (const torch::jit::Module& m : module.modules()) {
    const auto cu = m._ivalue()->compilation_unit();
    if (std::find(units.begin(), units.end(), cu.get()) != units.end()) continue;
    units.push_back(cu.get());
    for (torch::jit::Function* fn : cu->get_functions()) {
      if (auto* graph_fn = torch::jit::tryToGraphFunction(*fn)) functions.push_back(graph_fn);
    }
  }
  Inliner inliner;
  for (torch::jit::GraphFunction* fn : functions) inliner.snapshot(fn);
  const std::vector<torch::jit::Function*> root = module.type()->methods();
  FusionCounts total;
  for (torch::jit::GraphFunction* fn : functions) {
    if (!root_methods && std::find(root.begin(), root.end(), fn) != root.end()) continue;
    inliner.inline_calls(fn->graph()->block());
    add(total, rewrite_inlined(fn->graph()));
    fn->clear_optimized_graphs();  // executors must be built from the rewritten graph
  }
  return total;
}

}  // namespace fewstep
