// The extended UNet and text-encoder contract (README, "Model packages"):
// time_embed(timestep, timestep_cond, added_cond) or time_embed(timestep) by
// schema, the monolithic forward's optional extra inputs, text encoders that
// return (hidden, pooled), and UNets that run at any batch and size.
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "unet/torchscript.h"

namespace fs = std::filesystem;
using namespace fewstep;

namespace {

ModelManifest tiny(const std::string& name) { return load_manifest(fs::path(FEWSTEP_TEST_MODELS) / name); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ModelError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(UnetContract, ExtraInputsFollowTheSchema) {
  struct Case {
    const char* package;
    bool timestep_cond, added_cond;
  };
  for (const Case& c :
       {Case{"tiny-blocks", false, false}, Case{"tiny-mono", false, false}, Case{"tiny-sdxl", true, true},
        Case{"tiny-sdxl-mono", true, true}, Case{"tiny-lcm", true, true}}) {
    TorchScriptUnet u(tiny(c.package).unet, true, nullptr);
    EXPECT_EQ(u.takes_timestep_cond(), c.timestep_cond) << c.package;
    EXPECT_EQ(u.takes_added_cond(), c.added_cond) << c.package;
  }
}

TEST(UnetContract, TimeEmbedGetsItsArgumentsInContractOrder) {
  // The probe's time_embed returns cat(t, timestep_cond [8], added_cond [14])
  // and its blocks write that into the image: the output is what time_embed got.
  TorchScriptUnet probe(tiny("probe-lcm").unet, true, nullptr);
  at::NoGradGuard ng;
  const at::Tensor t = at::tensor({7.0f, 11.0f});
  const at::Tensor tc = at::arange(16, at::kFloat).view({2, 8}) + 100;
  const at::Tensor ac = at::arange(28, at::kFloat).view({2, 14}) + 200;
  const at::Tensor ctx = at::zeros({2, 16, 32});
  const at::Tensor out = probe.forward(at::zeros({2, 3, 16, 16}), t, ctx, {tc, ac}).reshape({2, -1});
  EXPECT_TRUE(at::equal(out.narrow(1, 0, 1).squeeze(1), t));
  EXPECT_TRUE(at::equal(out.narrow(1, 1, 8), tc));
  EXPECT_TRUE(at::equal(out.narrow(1, 9, 14), ac));
  // A missing input reaches the module as an empty tensor (the probe writes zeros).
  const at::Tensor only_t = probe.forward(at::zeros({2, 3, 16, 16}), t, ctx, {}).reshape({2, -1});
  EXPECT_EQ(only_t.narrow(1, 1, 22).abs().max().item<float>(), 0.0f);
}

TEST(UnetContract, SdxlBlocksEqualMonolithicAtAnyBatchAndSize) {
  TorchScriptUnet blocks(tiny("tiny-sdxl").unet, true, nullptr), mono(tiny("tiny-sdxl-mono").unet, true, nullptr);
  at::NoGradGuard ng;
  at::manual_seed(3);
  for (const auto& [h, w] : std::vector<std::pair<int64_t, int64_t>>{{16, 24}, {8, 16}, {24, 8}}) {
    const at::Tensor x = at::randn({4, 3, h, w}), t = at::tensor({999.0f, 600.0f, 250.0f, 1.0f});
    const at::Tensor ctx = at::randn({4, 16, 48}),
                     ac = at::cat({at::randn({4, 8}),
                                   at::tensor({float(h), float(w), 0.0f, 0.0f, float(h), float(w)}).expand({4, 6})},
                                  1);
    const at::Tensor y4 = blocks.forward(x, t, ctx, {at::Tensor(), ac});
    EXPECT_EQ(y4.sizes(), x.sizes());
    EXPECT_LE((y4 - mono.forward(x, t, ctx, {at::Tensor(), ac})).abs().max().item<float>(), 1e-5f);
    for (int64_t b : {1, 2}) {
      const at::Tensor yb =
          blocks.forward(x.narrow(0, 0, b), t.narrow(0, 0, b), ctx.narrow(0, 0, b), {at::Tensor(), ac.narrow(0, 0, b)});
      EXPECT_LE((yb - y4.narrow(0, 0, b)).abs().max().item<float>(), 1e-5f) << "batch " << b << " at " << h << "x" << w;
    }
  }
}

TEST(UnetContract, AddedCondAndTimestepCondSteerTheOutput) {
  at::NoGradGuard ng;
  at::manual_seed(4);
  const at::Tensor x = at::randn({1, 3, 16, 16}), t = at::tensor({500.0f}), ctx = at::randn({1, 16, 48});
  TorchScriptUnet sdxl(tiny("tiny-sdxl").unet, true, nullptr);
  const at::Tensor ids = at::tensor({16.0f, 16.0f, 0.0f, 0.0f, 16.0f, 16.0f}).view({1, 6});
  const at::Tensor pooled = at::randn({1, 8});
  const at::Tensor y = sdxl.forward(x, t, ctx, {at::Tensor(), at::cat({pooled, ids}, 1)});
  const at::Tensor y_pooled = sdxl.forward(x, t, ctx, {at::Tensor(), at::cat({pooled * 2, ids}, 1)});
  const at::Tensor y_ids = sdxl.forward(x, t, ctx, {at::Tensor(), at::cat({pooled, ids * 2}, 1)});
  EXPECT_GT((y - y_pooled).abs().max().item<float>(), 1e-4f);
  EXPECT_GT((y - y_ids).abs().max().item<float>(), 1e-4f);
  // Without added_cond the SDXL module raises: one line naming the file.
  const std::string missing = error_of([&] { sdxl.forward(x, t, ctx, {}); });
  EXPECT_NE(missing.find("unet.pt: forward failed for sample [1, 3, 16, 16]"), std::string::npos) << missing;
  EXPECT_NE(missing.find("added_cond"), std::string::npos) << missing;
  EXPECT_EQ(missing.find('\n'), std::string::npos) << missing;

  TorchScriptUnet lcm(tiny("tiny-lcm").unet, true, nullptr);
  const at::Tensor ctx32 = at::randn({1, 16, 32});
  const at::Tensor a = lcm.forward(x, t, ctx32, {at::zeros({1, 8}), at::Tensor()});
  const at::Tensor b = lcm.forward(x, t, ctx32, {at::ones({1, 8}), at::Tensor()});
  EXPECT_GT((a - b).abs().max().item<float>(), 1e-4f);
}

TEST(UnetContract, OldUnetRefusesExtraInputs) {
  TorchScriptUnet old(tiny("tiny-blocks").unet, true, nullptr), mono(tiny("tiny-mono").unet, true, nullptr);
  at::NoGradGuard ng;
  const at::Tensor x = at::zeros({1, 3, 16, 16}), t = at::tensor({1.0f}), ctx = at::zeros({1, 16, 32});
  const std::string a = error_of([&] { old.forward(x, t, ctx, {at::zeros({1, 8}), at::Tensor()}); });
  EXPECT_EQ(a, "unet.pt: got a timestep_cond, but the UNet's time_embed.forward takes none");
  const std::string b = error_of([&] { mono.forward(x, t, ctx, {at::Tensor(), at::zeros({1, 14})}); });
  EXPECT_EQ(b, "unet.pt: got an added_cond, but the UNet's forward takes none");
}

TEST(TextEncoderContract, TupleGivesHiddenAndPooled) {
  const ModelManifest m = tiny("tiny-sdxl");
  TextEncoder te2(*m.text_encoder_2, nullptr);
  at::NoGradGuard ng;
  // Rows: BOS "a" EOS then padding 0, and BOS "b" "c" EOS.
  at::Tensor ids = at::zeros({2, 16}, at::kLong);
  ids[0][0] = 512, ids[0][1] = 353, ids[0][2] = 513;
  ids[1][0] = 512, ids[1][1] = 354, ids[1][2] = 355, ids[1][3] = 513;
  const TextEmbedding e = te2.encode(ids);
  EXPECT_EQ(e.hidden.sizes(), (std::vector<int64_t>{2, 16, 24}));
  ASSERT_TRUE(e.pooled.defined());
  EXPECT_EQ(e.pooled.sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_GT((e.pooled[0] - e.pooled[1]).abs().max().item<float>(), 1e-4f);
  // Without pooled_size the tuple's first element is the hidden state, as before.
  TextEncoderSpec hidden_only = *m.text_encoder_2;
  hidden_only.pooled_size = 0;
  const TextEmbedding h = TextEncoder(hidden_only, nullptr).encode(ids);
  EXPECT_TRUE(at::equal(h.hidden, e.hidden));
  EXPECT_FALSE(h.pooled.defined());
  // A pooled size that does not match, or a module that returns no tuple: one line naming the field.
  TextEncoderSpec wrong = *m.text_encoder_2;
  wrong.pooled_size = 9;
  EXPECT_EQ(error_of([&] { TextEncoder(wrong, nullptr).encode(ids); }),
            "text_encoder_2.pt: pooled output [2, 8] does not match field 'text_encoder_2.pooled_size' = 9");
  TextEncoderSpec single = *m.text_encoder;
  single.pooled_size = 8;
  EXPECT_EQ(error_of([&] { TextEncoder(single, nullptr).encode(ids); }),
            "text_encoder.pt: field 'text_encoder.pooled_size' is set but forward returns no (hidden, pooled) tuple");
}

}  // namespace
