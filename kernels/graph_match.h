// fewstep TorchScript passes: small predicates on graph values and nodes
// that the rewrite passes (rewrite_attention.cpp, rewrite_fusion.cpp) share.
#pragma once

#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdint>
#include <optional>

namespace fewstep::match {

/// The input of `node` named `name` in its schema, or nullptr.
inline torch::jit::Value* input_named(const torch::jit::Node* node, const char* name) {
  const c10::FunctionSchema* schema = node->maybeSchema();
  if (schema == nullptr) return nullptr;
  const std::optional<int> index = schema->argumentIndexWithName(name);
  if (!index || static_cast<size_t>(*index) >= node->inputs().size()) return nullptr;
  return node->input(*index);
}

inline bool is_none(const torch::jit::Value* v) {
  if (v->type()->kind() == c10::TypeKind::NoneType) return true;
  const std::optional<c10::IValue> c = torch::jit::toIValue(v);
  return c && c->isNone();
}

/// A constant number (int, float, bool or one-element tensor), as a double.
inline std::optional<double> constant_number(const torch::jit::Value* v) {
  const std::optional<c10::IValue> c = torch::jit::toIValue(v);
  if (!c) return std::nullopt;
  if (c->isDouble() || c->isInt() || c->isBool()) return c->toScalar().toDouble();
  if (c->isTensor() && c->toTensor().numel() == 1) return c->toTensor().item<double>();
  return std::nullopt;
}

inline bool is_constant(const torch::jit::Value* v, double x) {
  const std::optional<double> c = constant_number(v);
  return c && *c == x;
}

/// Whether `v` is a number: typed float/int/number, or a constant number.
inline bool is_number(const torch::jit::Value* v) {
  const c10::TypeKind kind = v->type()->kind();
  return kind == c10::TypeKind::FloatType || kind == c10::TypeKind::IntType || kind == c10::TypeKind::NumberType ||
         constant_number(v).has_value();
}

/// Whether `v` has exactly one use, by `user`.
inline bool only_use_is(const torch::jit::Value* v, const torch::jit::Node* user) {
  return v->uses().size() == 1 && v->uses()[0].user == user;
}

/// The rank of a tensor value when its type records one.
inline std::optional<int64_t> known_rank(const torch::jit::Value* v) {
  if (auto tensor = v->type()->cast<c10::TensorType>()) {
    if (auto dim = tensor->dim()) return static_cast<int64_t>(*dim);
  }
  return std::nullopt;
}

}  // namespace fewstep::match
