#!/usr/bin/env python3
"""Cases per second of HF transformers on the tiny random Qwen3-VL of tests/fixtures/vlm/, the
yardstick for benches/vlm_throughput.rs: same CPU, checkpoint, images, question and work per
case (open the PNG, image processor, chat template, tokenize, one forward pass for p(yes),
greedy generate 4 tokens with the KV cache). f32, eager attention.

    python3 benches/vlm_transformers.py [cases] [threads]
"""
import os
import sys
import time

import torch
import transformers
from PIL import Image
from transformers import Qwen3VLForConditionalGeneration, PreTrainedTokenizerFast
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
if len(sys.argv) > 2:
    torch.set_num_threads(int(sys.argv[2]))
fx = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "vlm")
ck = os.path.join(fx, "tiny-qwen3-vl")
transformers.processing_utils.ProcessorMixin.check_argument_for_proper_class = lambda *a, **k: None
tok = PreTrainedTokenizerFast.from_pretrained(ck)
improc = Qwen2VLImageProcessorPil.from_pretrained(ck)
import json
tmpl = json.load(open(os.path.join(ck, "chat_template.json")))["chat_template"]
proc = Qwen3VLProcessor(image_processor=improc, tokenizer=tok, video_processor=None, chat_template=tmpl)
model = Qwen3VLForConditionalGeneration.from_pretrained(ck, attn_implementation="eager").eval()
yes = [tok.convert_tokens_to_ids(t) for t in ["yes", "Ġyes", "Yes", "ĠYes", "YES", "ĠYES"] if t in tok.get_vocab()]
q = "Is there a pneumothorax? Answer yes or no."
names = ["rgb_64x64.png", "grey_70x50.png", "rgb_200x150.png"]
eos = tok.convert_tokens_to_ids("<|im_end|>")


def case(i):
    img = Image.open(os.path.join(fx, "images", names[i % 3])).convert("RGB")
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    inputs = proc(text=[text], images=[img], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
        p = torch.softmax(logits.double(), -1)[yes].sum().item()
        model.generate(**inputs, max_new_tokens=4, do_sample=False, eos_token_id=eos, pad_token_id=0)
    return p


for i in range(3):
    case(i)
rates = []
for _ in range(3):
    t = time.perf_counter()
    for i in range(n):
        case(i)
    rates.append(n / (time.perf_counter() - t))
rates.sort()
print(f"transformers {transformers.__version__} / torch {torch.__version__} ({torch.get_num_threads()} threads): "
      f"{n} cases: {rates[1]:.1f} cases/s (median of 3 rounds; all {[round(r, 1) for r in rates]})")
