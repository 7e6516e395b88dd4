# GUI tests (included by tests/CMakeLists.txt when SAESCOPE_GUI is on). Label "gui".
#   test_gui_units   JobRunner, flag parsing, scripts, notes: no window, no display needed
#   test_gui         the real app under `xvfb-run -a`: screenshots of every view, scripted input
add_executable(saescope_gui_driver gui/gui_driver.cpp)
target_link_libraries(saescope_gui_driver PRIVATE saescope_ui)

saescope_test(test_gui_units
  LIBS saescope_ui saescope_engine_core PkgConfig::IMGUI
  SOURCES test_gui_units.cpp
  LABELS gui
  TIMEOUT 120)

find_program(XVFB_RUN xvfb-run)
# saescope_gui_test(NAME TIMEOUT s [DEPENDS target...] [DEFINITIONS def...]): a doctest executable
# NAME.cpp that starts the real app (saescope_gui_driver) as child processes, run under one
# `xvfb-run -a` X server (without xvfb-run it needs a DISPLAY and fails otherwise).
function(saescope_gui_test name)
  cmake_parse_arguments(G "" "TIMEOUT" "DEPENDS;DEFINITIONS" ${ARGN})
  add_executable(${name} ${name}.cpp)
  target_link_libraries(${name} PRIVATE saescope_doctest_main saescope_engine)
  add_dependencies(${name} saescope_gui_driver ${G_DEPENDS})
  target_compile_definitions(${name} PRIVATE
    SAESCOPE_PYTHON="${SAESCOPE_PYTHON}"
    SAESCOPE_TEST_DIR="${CMAKE_CURRENT_SOURCE_DIR}"
    SAESCOPE_BINARY_DIR="${CMAKE_BINARY_DIR}"
    SAESCOPE_GUI_DRIVER="$<TARGET_FILE:saescope_gui_driver>"
    ${G_DEFINITIONS})
  if(XVFB_RUN)
    add_test(NAME ${name} COMMAND ${XVFB_RUN} -a -s "-screen 0 1600x1200x24" $<TARGET_FILE:${name}>)
  else()
    add_test(NAME ${name} COMMAND ${name})
  endif()
  # The app's settings (recent workspaces, window size) go to a folder of the tests, never the
  # user's ~/.config: the cases without a fixture of their own wrote test workspaces there.
  set_tests_properties(${name} PROPERTIES LABELS gui TIMEOUT ${G_TIMEOUT}
    ENVIRONMENT "XDG_CONFIG_HOME=${CMAKE_BINARY_DIR}/testtmp/gui-config")
endfunction()

# Screenshots of every view, scripted navigation, notes, a run started and cancelled.
saescope_gui_test(test_gui TIMEOUT 900)
# Drag and drop (folders, tensor files) and the browser's exports.
saescope_gui_test(test_gui_import TIMEOUT 600)
# HiDPI (Xft.dpi via xrdb), window size and per-workspace UI state across restarts.
saescope_gui_test(test_gui_desktop TIMEOUT 600)
# The blind study: scripted ratings, SIGKILL mid-study, resume, results, exports.
saescope_gui_test(test_gui_study TIMEOUT 900 DEPENDS saescope
  DEFINITIONS SAESCOPE_CLI="$<TARGET_FILE:saescope>")
