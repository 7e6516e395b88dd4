# GUI tests (included by tests/CMakeLists.txt when SAESCOPE_GUI is on). Label "gui".
#   test_gui_units   JobRunner, flag parsing, scripts, notes: no window, no display needed
#   test_gui         the real app under `xvfb-run -a`: screenshots of every view, scripted input
add_executable(saescope_gui_driver gui/gui_driver.cpp)
target_link_libraries(saescope_gui_driver PRIVATE saescope_ui)

saescope_test(test_gui_units
  LIBS saescope_ui saescope_engine_core
  SOURCES test_gui_units.cpp
  LABELS gui
  TIMEOUT 120)

find_program(XVFB_RUN xvfb-run)
add_executable(test_gui test_gui.cpp)
target_link_libraries(test_gui PRIVATE saescope_doctest_main saescope_engine)
add_dependencies(test_gui saescope_gui_driver)
target_compile_definitions(test_gui PRIVATE
  SAESCOPE_PYTHON="${SAESCOPE_PYTHON}"
  SAESCOPE_TEST_DIR="${CMAKE_CURRENT_SOURCE_DIR}"
  SAESCOPE_BINARY_DIR="${CMAKE_BINARY_DIR}"
  SAESCOPE_GUI_DRIVER="$<TARGET_FILE:saescope_gui_driver>")
if(XVFB_RUN)
  # One X server for the whole suite; each case starts the app as a child process on it.
  add_test(NAME test_gui COMMAND ${XVFB_RUN} -a -s "-screen 0 1600x1200x24" $<TARGET_FILE:test_gui>)
else()
  add_test(NAME test_gui COMMAND test_gui)  # without xvfb-run, needs a DISPLAY (fails otherwise)
endif()
set_tests_properties(test_gui PROPERTIES LABELS gui TIMEOUT 900)

# Drag and drop (folders, tensor files) and the browser's exports, in the real app under Xvfb.
add_executable(test_gui_import test_gui_import.cpp)
target_link_libraries(test_gui_import PRIVATE saescope_doctest_main saescope_engine)
add_dependencies(test_gui_import saescope_gui_driver)
target_compile_definitions(test_gui_import PRIVATE
  SAESCOPE_PYTHON="${SAESCOPE_PYTHON}"
  SAESCOPE_TEST_DIR="${CMAKE_CURRENT_SOURCE_DIR}"
  SAESCOPE_BINARY_DIR="${CMAKE_BINARY_DIR}"
  SAESCOPE_GUI_DRIVER="$<TARGET_FILE:saescope_gui_driver>")
if(XVFB_RUN)
  add_test(NAME test_gui_import
    COMMAND ${XVFB_RUN} -a -s "-screen 0 1600x1200x24" $<TARGET_FILE:test_gui_import>)
else()
  add_test(NAME test_gui_import COMMAND test_gui_import)
endif()
set_tests_properties(test_gui_import PROPERTIES LABELS gui TIMEOUT 600)

# The blind study in the real app: scripted ratings, SIGKILL mid-study, resume, results, exports.
add_executable(test_gui_study test_gui_study.cpp)
target_link_libraries(test_gui_study PRIVATE saescope_doctest_main saescope_engine)
add_dependencies(test_gui_study saescope_gui_driver saescope)
target_compile_definitions(test_gui_study PRIVATE
  SAESCOPE_PYTHON="${SAESCOPE_PYTHON}"
  SAESCOPE_TEST_DIR="${CMAKE_CURRENT_SOURCE_DIR}"
  SAESCOPE_BINARY_DIR="${CMAKE_BINARY_DIR}"
  SAESCOPE_GUI_DRIVER="$<TARGET_FILE:saescope_gui_driver>"
  SAESCOPE_CLI="$<TARGET_FILE:saescope>")
if(XVFB_RUN)
  add_test(NAME test_gui_study COMMAND ${XVFB_RUN} -a -s "-screen 0 1600x1200x24" $<TARGET_FILE:test_gui_study>)
else()
  add_test(NAME test_gui_study COMMAND test_gui_study)
endif()
set_tests_properties(test_gui_study PROPERTIES LABELS gui TIMEOUT 900)
