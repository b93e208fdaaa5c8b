# `fewstep sweep` and `fewstep profile` library code (issue 6), added to fewstep_pipeline.
target_sources(fewstep_pipeline PRIVATE
  "${CMAKE_CURRENT_LIST_DIR}/canvas.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/plot.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/contact_sheet.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/metrics.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/sweep.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/sweep_report.cpp")
target_sources(fewstep_pipeline PRIVATE "${CMAKE_CURRENT_LIST_DIR}/profile.cpp")
