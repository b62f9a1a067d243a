"""Evaluation: run a codec over a data set with real files, results JSON, BD-rate, RD plots.

  evaluate.evaluate_codec(codec, images, *, name, ...) -> results dict (+ JSON and per-image CSV)
  results.load_results / merge_results / bd_rate / bd_psnr / bd_from_results
  plot.plot_rd(results_list, out_path, *, reference="balle2018")
  loading.load_codec(workdir) -> Codec;  loading.load_eval_set(name_or_path, limit=None)
  sweep.evaluate_sweep(workdirs, *, out_json, ...) -> merged results of a rate sweep (+ plot)
Submodules are imported on use (plotting pulls in matplotlib).
"""
